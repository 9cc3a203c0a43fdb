"""EventPoster against the real API server: every Event stored, over reused connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import psutil
from kubernetes import client as k8s

from kingest.operator.events import EventPoster
from kingest.operator.rawapi import AsyncApi
from kingest.operator.reconcile import Event
from tests.platform.kube import ControlPlane

TASKS = 2


def connections_to(server: str) -> set[tuple[str, int]]:
    """This process's open connections to the API server (their local addresses)."""
    port = urlsplit(server).port
    return {
        tuple(c.laddr)
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


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
    before = connections_to(api.configuration.host)
    opened: set[tuple[str, int]] = set()

    async def post_all() -> None:
        # More connections allowed than there are tasks: the tasks are what bounds them.
        calls = AsyncApi(api.configuration, connections=8)
        events = EventPoster(calls.create, lambda: "2026-11-25T12:00:00Z", tasks=TASKS)
        events.start()
        for number in range(40):
            events.post(ingestion, Event("Normal", "RunCreated", f"run {number}"))
            opened.update(connections_to(api.configuration.host) - before)
            await asyncio.sleep(0.01)
        while events.pending():
            opened.update(connections_to(api.configuration.host) - before)
            await asyncio.sleep(0.01)
        await asyncio.sleep(1)  # the last ones in flight
        opened.update(connections_to(api.configuration.host) - before)
        await events.stop()
        await calls.close()

    asyncio.run(post_all())
    items = stored(namespace, lambda items: len(items) == 40, kube.api_client())
    assert sorted(int(e.message.split()[1]) for e in items) == list(range(40))
    assert {(e.reason, e.involved_object.name) for e in items} == {("RunCreated", "sync")}
    # Each posting task uses one connection at a time and hands it back when the reply is
    # read: a connection per Event would pay a TLS handshake each (seen here as new local
    # ports).
    assert 1 <= len(opened) <= TASKS


def test_events_wait_while_runs_are_being_started(kube: ControlPlane, namespace: str) -> None:
    api = kube.api_client()
    starting = True

    async def post_while_starting() -> None:
        nonlocal starting
        calls = AsyncApi(api.configuration, connections=2)
        events = EventPoster(calls.create, lambda: "2026-12-01T10:00:00Z", hold=lambda: starting)
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
        await calls.close()

    asyncio.run(post_while_starting())
    items = stored(namespace, bool, kube.api_client())
    assert [e.message for e in items] == ["run 1"]
