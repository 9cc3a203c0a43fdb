"""Post the Events that `plan` asks for, from their own asyncio tasks, in about the order
planned.

An Event is a courtesy to whoever runs `kubectl describe`: a reconcile hands its Events over and
goes on to the next Ingestion instead of waiting for the API server to store them, and they
wait while runs are being started, so that 500 Ingestions created at once get their Jobs
sooner. Losing one (the API server refused it, the operator stopped) must not fail anything.

kopf's own `kopf.event` posts at once, one at a time, as component "kopf"; this poster holds
Events back while runs start and names the operator as their source.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes import client as k8s

from kingest.operator import tasks
from kingest.operator.reconcile import Event
from kingest.operator.spec import GROUP, KIND, VERSION
from kingest.operator.status import redact

log = logging.getLogger("kingest.operator.events")
MAX_EVENT_MESSAGE = 1024
MAX_HOLD_S = 10.0
_HOLD_POLL_S = 0.05


def event_body(obj: dict[str, Any], event: Event, now: str) -> dict[str, Any]:
    """The `v1` Event about Ingestion `obj` (its message redacted and clipped)."""
    meta = obj["metadata"]
    return {
        "metadata": {"generateName": f"{meta['name'][:200]}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": event.type,
        "reason": event.reason,
        "message": redact(event.message)[:MAX_EVENT_MESSAGE],
        "source": {"component": "kingest-operator"},
        "reportingComponent": "kingest-operator",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventPoster:
    """Posts Events handed to `post` from `tasks` asyncio tasks, first come first served.

    Each Event carries the time it was planned, so `kubectl describe` orders them right even
    when two tasks store them the other way round. `create(path, body)` is the API call
    (a coroutine: the reconciler's `rawapi.AsyncApi.create`).
    """

    def __init__(
        self,
        create: Callable[[str, dict[str, Any]], Awaitable[object]],
        now: Callable[[], str],
        tasks: int = 2,
        hold: Callable[[], bool] = lambda: False,
    ) -> None:
        self._create, self._now, self._concurrency, self._hold = create, now, tasks, hold
        self._pending: collections.deque[tuple[dict[str, Any], Event, str]] = collections.deque()
        self._arrived = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start posting on the running loop (once)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name=f"kingest-events-{number}")
                for number in range(self._concurrency)
            ]

    async def stop(self) -> None:
        """Stop posting; Events not posted yet are dropped."""
        await tasks.cancel(self._tasks)
        self._tasks = []

    def post(self, obj: dict[str, Any], event: Event) -> None:
        """Post `event` about Ingestion `obj` soon, stamped with the time it was planned."""
        self._pending.append((obj, event, self._now()))
        self._arrived.set()

    def pending(self) -> list[Event]:
        """The Events not taken for posting yet, in order."""
        return [event for _, event, _ in self._pending]

    async def _run(self) -> None:
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            obj, event, now = self._pending.popleft()
            # While `hold()` (runs are being started), Events wait: the API server is busy
            # enough. At most MAX_HOLD_S each, should the operator never be idle.
            held_until = time.monotonic() + MAX_HOLD_S
            while self._hold() and time.monotonic() < held_until:
                await asyncio.sleep(_HOLD_POLL_S)
            try:
                namespace = obj["metadata"]["namespace"]
                path = f"/api/v1/namespaces/{namespace}/events"
                await self._create(path, event_body(obj, event, now))
            except Exception as exc:
                reason = exc.reason if isinstance(exc, k8s.ApiException) else repr(exc)
                log.warning("could not post event %s: %s", event.reason, reason)
