"""rawapi.AsyncApi against the real API server: plain JSON both ways, the client's errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes import client as k8s

from kingest.operator import rawapi
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


def _rotating(kube_api: k8s.ApiClient, tokens: list[str]) -> tuple[k8s.Configuration, list]:
    """A configuration whose refresh hook hands out `tokens` in turn (then the last one
    again), as the in-cluster loader's hook re-reads a rotating token file."""
    configuration = k8s.Configuration()
    configuration.host = kube_api.configuration.host
    configuration.ssl_ca_cert = kube_api.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": "Bearer none-yet"}
    handed_out: list[str] = []

    def refresh(config: k8s.Configuration) -> None:
        token = tokens[min(len(handed_out), len(tokens) - 1)]
        handed_out.append(token)
        config.api_key["authorization"] = token

    configuration.refresh_api_key_hook = refresh
    return configuration, handed_out


def test_a_token_refused_is_read_again_and_the_call_made_once_more(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    # In a cluster the service account's token file rotates: a token the API server refuses
    # is read again through the configuration's hook, and the call repeated with the new one.
    current = kube_api.configuration.auth_settings()["BearerToken"]["value"]
    configuration, handed_out = _rotating(kube_api, ["Bearer expired", current])

    async def calls() -> tuple[dict, dict]:
        api = AsyncApi(configuration, connections=1)
        try:
            return await api.get(configmaps(namespace)), await api.get(configmaps(namespace))
        finally:
            await api.close()

    first, second = asyncio.run(calls())
    assert first["kind"] == second["kind"] == "ConfigMapList"
    # Read at the first call, again on its 401, and not for the second call: the token is
    # reused for `AUTH_REUSE_S` seconds.
    assert handed_out == ["Bearer expired", current]


def test_a_token_refused_twice_is_a_401_not_a_loop(kube_api: k8s.ApiClient, namespace: str) -> None:
    configuration, handed_out = _rotating(kube_api, ["Bearer expired"])

    async def call() -> None:
        api = AsyncApi(configuration, connections=1)
        try:
            await api.get(configmaps(namespace))
        finally:
            await api.close()

    with pytest.raises(k8s.ApiException) as refused:
        asyncio.run(call())
    assert refused.value.status == 401
    assert handed_out == ["Bearer expired", "Bearer expired"]


def test_credentials_are_read_again_once_they_are_older_than_the_reuse_period(
    kube_api: k8s.ApiClient, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = kube_api.configuration.auth_settings()["BearerToken"]["value"]
    configuration, handed_out = _rotating(kube_api, [current])
    monkeypatch.setattr(rawapi, "AUTH_REUSE_S", 0.0)

    async def calls() -> None:
        api = AsyncApi(configuration, connections=1)
        try:
            for _ in range(3):
                await api.get(configmaps(namespace))
        finally:
            await api.close()

    asyncio.run(calls())
    assert len(handed_out) == 3


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


def test_a_watch_yields_every_event_whole_until_the_api_server_ends_it(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    path = configmaps(namespace)
    large = "x" * 600_000  # one event's line spans many reads

    async def calls() -> tuple[list[dict], float]:
        api = AsyncApi(kube_api.configuration, connections=2)
        try:
            version = (await api.get(path))["metadata"]["resourceVersion"]
            for number, value in enumerate(["a", large, "c"]):
                await api.create(path, {"metadata": {"name": f"c{number}"}, "data": {"v": value}})
            loop = asyncio.get_running_loop()
            started = loop.time()
            events = [e async for e in api.watch(path, {"resourceVersion": version}, timeout_s=2)]
            return events, loop.time() - started
        finally:
            await api.close()

    events, took = asyncio.run(calls())
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "c0"),
        ("ADDED", "c1"),
        ("ADDED", "c2"),
    ]
    assert [e["object"]["data"]["v"] for e in events] == ["a", large, "c"]
    assert took < 30  # ended by the API server (timeoutSeconds), not by the client
