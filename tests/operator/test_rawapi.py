"""rawapi.AsyncApi against the real API server: plain JSON both ways, the client's errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes import client as k8s

from kingest.operator.rawapi import ApiUnreachable, AsyncApi


def configmaps(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps"


def test_create_returns_the_stored_object_and_fails_like_the_client(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    path = configmaps(namespace)
    body = {"metadata": {"name": "settings"}, "data": {"level": "debug"}}

    async def calls() -> tuple[dict, k8s.ApiException, k8s.ApiException]:
        api = AsyncApi(kube_api.configuration, connections=2)
        try:
            created = await api.create(path, body)
            with pytest.raises(k8s.ApiException) as taken:
                await api.create(path, body)
            with pytest.raises(k8s.ApiException) as invalid:
                await api.create(path, {"metadata": {"name": "Not A Name"}})
            return created, taken.value, invalid.value
        finally:
            await api.close()

    created, taken, invalid = asyncio.run(calls())
    assert created["metadata"]["uid"] and created["data"] == {"level": "debug"}
    stored = k8s.CoreV1Api(kube_api).read_namespaced_config_map("settings", namespace)
    assert stored.metadata.uid == created["metadata"]["uid"]
    assert taken.status == 409
    assert json.loads(taken.body)["reason"] == "AlreadyExists"
    assert invalid.status == 422
    assert "Not A Name" in json.loads(invalid.body)["message"]


def test_patch_get_and_delete_act_on_the_stored_object(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    path = configmaps(namespace)
    operations = [{"op": "add", "path": "/data", "value": {"level": "debug"}}]

    async def calls() -> dict:
        api = AsyncApi(kube_api.configuration, connections=2)
        try:
            created = await api.create(path, {"metadata": {"name": "s"}, "data": {"a": "1"}})
            patched = await api.patch(f"{path}/s", operations)
            # The whole value replaced (not merged), as the status writes rely on.
            assert patched["data"] == {"level": "debug"}
            assert int(patched["metadata"]["resourceVersion"]) > int(
                created["metadata"]["resourceVersion"]
            )
            assert (await api.get(f"{path}/s"))["data"] == {"level": "debug"}
            with pytest.raises(k8s.ApiException) as missing:
                await api.patch(f"{path}/absent", operations)
            assert missing.value.status == 404
            gone = await api.delete(f"{path}/s", propagation="Background")
            with pytest.raises(k8s.ApiException) as deleted:
                await api.get(f"{path}/s")
            assert deleted.value.status == 404
            return gone
        finally:
            await api.close()

    gone = asyncio.run(calls())
    assert gone["kind"] == "Status" and gone["details"]["name"] == "s"


def test_a_rotated_token_is_read_again_for_every_call(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    # In a cluster the service account's token file rotates: the client's configuration then
    # carries a hook that reads it again, which every call must go through.
    configuration = k8s.Configuration()
    configuration.host = kube_api.configuration.host
    configuration.ssl_ca_cert = kube_api.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": "Bearer expired"}
    current = kube_api.configuration.auth_settings()["BearerToken"]["value"]
    refreshed: list[str] = []

    def refresh(config: k8s.Configuration) -> None:
        refreshed.append(config.api_key["authorization"])
        config.api_key["authorization"] = current if len(refreshed) > 1 else "Bearer expired"

    configuration.refresh_api_key_hook = refresh

    async def calls() -> tuple[k8s.ApiException, dict]:
        api = AsyncApi(configuration, connections=1)
        try:
            with pytest.raises(k8s.ApiException) as refused:
                await api.get(configmaps(namespace))
            return refused.value, await api.get(configmaps(namespace))
        finally:
            await api.close()

    refused, listed = asyncio.run(calls())
    assert refused.status == 401
    assert listed["kind"] == "ConfigMapList"
    assert len(refreshed) == 2


def test_an_unreachable_api_server_is_named_with_the_call() -> None:
    configuration = k8s.Configuration()
    configuration.host = "https://127.0.0.1:9"  # the discard port: nothing listens
    configuration.api_key = {"authorization": "Bearer not-to-be-shown"}

    async def call() -> None:
        api = AsyncApi(configuration, connections=1)
        try:
            await api.get("/api/v1/namespaces")
        finally:
            await api.close()

    with pytest.raises(ApiUnreachable) as unreachable:
        asyncio.run(call())
    message = str(unreachable.value)
    assert message.startswith("GET https://127.0.0.1:9/api/v1/namespaces: ")
    assert "127.0.0.1:9" in message.split(": ", 1)[1]
    assert "not-to-be-shown" not in repr(unreachable.value)
