"""rawapi.create against the real API server: plain JSON both ways, the client's errors."""

from __future__ import annotations

import json

import pytest
from kubernetes import client as k8s

from kingest.operator import rawapi


def test_create_returns_the_stored_object_and_fails_like_the_client(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    body = {"metadata": {"name": "settings"}, "data": {"level": "debug"}}
    created = rawapi.create(kube_api, path, body)
    assert created["metadata"]["uid"] and created["data"] == {"level": "debug"}
    stored = k8s.CoreV1Api(kube_api).read_namespaced_config_map("settings", namespace)
    assert stored.metadata.uid == created["metadata"]["uid"]

    with pytest.raises(k8s.ApiException) as taken:
        rawapi.create(kube_api, path, body)
    assert taken.value.status == 409
    assert json.loads(taken.value.body)["reason"] == "AlreadyExists"

    with pytest.raises(k8s.ApiException) as invalid:
        rawapi.create(kube_api, path, {"metadata": {"name": "Not A Name"}})
    assert invalid.value.status == 422
    assert "Not A Name" in json.loads(invalid.value.body)["message"]


def test_patch_applies_a_json_patch_and_fails_like_the_client(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    created = rawapi.create(kube_api, path, {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    operations = [{"op": "add", "path": "/data", "value": {"level": "debug"}}]
    patched = rawapi.patch(kube_api, f"{path}/settings", operations)
    # The whole value replaced (not merged), as the status writes rely on.
    assert patched["data"] == {"level": "debug"}
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    stored = k8s.CoreV1Api(kube_api).read_namespaced_config_map("settings", namespace)
    assert stored.data == {"level": "debug"}

    with pytest.raises(k8s.ApiException) as missing:
        rawapi.patch(kube_api, f"{path}/absent", operations)
    assert missing.value.status == 404
