"""Post the Events that `plan` asks for, on their own threads, about in the order planned.

An Event is a courtesy to whoever runs `kubectl describe`: a reconcile hands its Events over and
goes on to the next Ingestion instead of waiting for the API server to store them, so that 500
Ingestions created at once get their Jobs sooner. Losing one (the API server refused it, the
operator stopped) must not fail anything.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s

from kingest.operator import rawapi
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
    """Posts Events handed to `post` on `threads` background threads, first come first served.

    Each Event carries the time it was planned, so `kubectl describe` orders them right even
    when two threads store them the other way round.
    """

    def __init__(
        self,
        api: Callable[[], k8s.ApiClient],
        now: Callable[[], str],
        threads: int = 2,
        hold: Callable[[], bool] = lambda: False,
    ) -> None:
        self._api, self._now, self._threads, self._hold = api, now, threads, hold
        self._pending: queue.SimpleQueue[tuple[dict[str, Any], Event, str]] = queue.SimpleQueue()
        self._started = False

    def start(self) -> None:
        """Start the posting threads (once)."""
        if self._started:
            return
        self._started = True
        for number in range(self._threads):
            name = f"kingest-events-{number}"
            threading.Thread(target=self._run, name=name, daemon=True).start()

    def post(self, obj: dict[str, Any], event: Event) -> None:
        """Post `event` about Ingestion `obj` soon, stamped with the time it was planned."""
        self._pending.put((obj, event, self._now()))

    def _run(self) -> None:
        while True:
            obj, event, now = self._pending.get()
            # While `hold()` (runs are being started), Events wait: the API server is busy
            # enough. At most MAX_HOLD_S each, should the operator never be idle.
            held_until = time.monotonic() + MAX_HOLD_S
            while self._hold() and time.monotonic() < held_until:
                time.sleep(_HOLD_POLL_S)
            try:
                namespace = obj["metadata"]["namespace"]
                path = f"/api/v1/namespaces/{namespace}/events"
                rawapi.create(self._api(), path, event_body(obj, event, now))
            except Exception as exc:
                reason = exc.reason if isinstance(exc, k8s.ApiException) else repr(exc)
                log.warning("could not post event %s: %s", event.reason, reason)
