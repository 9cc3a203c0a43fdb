"""EventPoster against the real API server: every Event stored, over reused connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client as k8s

from kingest.operator import rawapi
from kingest.operator.events import EventPoster
from kingest.operator.reconcile import Event
from tests.platform.kube import ControlPlane

TASKS = 2


def connections_opened(api: k8s.ApiClient) -> int:
    pools = api.rest_client.pool_manager.pools  # a urllib3 container that refuses iteration
    return sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118


def poster(
    api: k8s.ApiClient, now: str, executor: ThreadPoolExecutor, **options: Any
) -> EventPoster:
    """A poster whose API calls run on `executor`, as the reconciler's do."""

    async def create(path: str, body: dict[str, Any]) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, rawapi.create, api, path, body)

    return EventPoster(create, lambda: now, **options)


def stored(namespace: str, until: Callable[[list[k8s.CoreV1Event]], bool], api: k8s.ApiClient):
    core = k8s.CoreV1Api(api)
    deadline = time.monotonic() + 30
    while True:
        items = core.list_namespaced_event(namespace).items
        if until(items) or time.monotonic() > deadline:
            return items
        time.sleep(0.2)


def test_events_are_posted_over_pooled_connections(kube: ControlPlane, namespace: str) -> None:
    api = kube.api_client()
    ingestion = {"metadata": {"name": "sync", "namespace": namespace, "uid": "uid-1"}}

    async def post_all() -> None:
        with ThreadPoolExecutor(8) as executor:
            events = poster(api, "2026-11-25T12:00:00Z", executor, tasks=TASKS)
            events.start()
            for number in range(40):
                events.post(ingestion, Event("Normal", "RunCreated", f"run {number}"))
            while events.pending():
                await asyncio.sleep(0.05)
            await asyncio.sleep(1)  # the last ones in flight
            await events.stop()

    asyncio.run(post_all())
    items = stored(namespace, lambda items: len(items) == 40, kube.api_client())
    assert sorted(int(e.message.split()[1]) for e in items) == list(range(40))
    assert {(e.reason, e.involved_object.name) for e in items} == {("RunCreated", "sync")}
    # Each posting task uses one connection at a time: an unread reply is never returned to
    # the pool, and every Event would then pay for a new TLS handshake.
    assert connections_opened(api) <= TASKS


def test_events_wait_while_runs_are_being_started(kube: ControlPlane, namespace: str) -> None:
    api = kube.api_client()
    starting = True

    async def post_while_starting() -> None:
        nonlocal starting
        with ThreadPoolExecutor(2) as executor:
            events = poster(api, "2026-12-01T10:00:00Z", executor, hold=lambda: starting)
            events.start()
            events.post(
                {"metadata": {"name": "sync", "namespace": namespace, "uid": "uid-1"}},
                Event("Normal", "RunCreated", "run 1"),
            )
            await asyncio.sleep(1)
            assert k8s.CoreV1Api(api).list_namespaced_event(namespace).items == []
            starting = False
            await asyncio.sleep(1)
            await events.stop()

    asyncio.run(post_while_starting())
    items = stored(namespace, bool, kube.api_client())
    assert [e.message for e in items] == ["run 1"]
