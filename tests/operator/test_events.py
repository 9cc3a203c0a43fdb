"""EventPoster against the real API server: every Event stored, over reused connections."""

from __future__ import annotations

import threading
import time

from kubernetes import client as k8s

from kingest.operator.events import EventPoster
from kingest.operator.reconcile import Event
from tests.platform.kube import ControlPlane

THREADS = 2


def connections_opened(api: k8s.ApiClient) -> int:
    pools = api.rest_client.pool_manager.pools  # a urllib3 container that refuses iteration
    return sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118


def test_events_are_posted_over_pooled_connections(kube: ControlPlane, namespace: str) -> None:
    api = kube.api_client()
    poster = EventPoster(lambda: api, lambda: "2026-11-25T12:00:00Z", threads=THREADS)
    poster.start()
    ingestion = {"metadata": {"name": "sync", "namespace": namespace, "uid": "uid-1"}}
    for number in range(40):
        poster.post(ingestion, Event("Normal", "RunCreated", f"run {number}"))

    core = k8s.CoreV1Api(kube.api_client())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stored = core.list_namespaced_event(namespace).items
        if len(stored) == 40:
            break
        time.sleep(0.2)
    assert sorted(int(e.message.split()[1]) for e in stored) == list(range(40))
    assert {(e.reason, e.involved_object.name) for e in stored} == {("RunCreated", "sync")}
    # Each posting thread keeps one connection: an unread reply is never returned to the pool,
    # and every Event would then pay for a new TLS handshake.
    assert connections_opened(api) <= THREADS


def test_events_wait_while_runs_are_being_started(kube: ControlPlane, namespace: str) -> None:
    api = kube.api_client()
    starting = threading.Event()
    starting.set()
    poster = EventPoster(lambda: api, lambda: "2026-12-01T10:00:00Z", hold=starting.is_set)
    poster.start()
    poster.post(
        {"metadata": {"name": "sync", "namespace": namespace, "uid": "uid-1"}},
        Event("Normal", "RunCreated", "run 1"),
    )
    core = k8s.CoreV1Api(kube.api_client())
    time.sleep(1)
    assert core.list_namespaced_event(namespace).items == []
    starting.clear()
    deadline = time.monotonic() + 10
    while not core.list_namespaced_event(namespace).items and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [e.message for e in core.list_namespaced_event(namespace).items] == ["run 1"]
