"""A queue of Ingestions to reconcile, worked off by a pool of threads (client-go's workqueue).

Whatever notices a change (an Ingestion event, a Job or Pod watch, a schedule slot) only
`add`s the Ingestion's key and returns, so no watch waits for a reconcile. A key is queued at
most once however often it is added, and never worked on by two threads at once (two
concurrent reconciles of one Ingestion could each see "no active run" and start two runs):
added while being worked on, it is queued again when that work ends, so a burst of events
costs one extra round. Failed work is retried with a growing delay: the next event may be far
away (a stale status, a run not started).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from kubernetes import client as k8s

log = logging.getLogger("kingest.operator.workqueue")
Key = tuple[str, str]  # (namespace, name)
MAX_RETRY_DELAY_S = 60


class WorkQueue:
    """Calls `work(namespace, name)` for added keys on `workers` threads, once `ready()`."""

    def __init__(
        self,
        work: Callable[[str, str], None],
        workers: int = 16,
        ready: Callable[[], object] = lambda: True,
    ) -> None:
        self._work, self._ready, self._workers = work, ready, workers
        self._queue: collections.deque[Key] = collections.deque()
        self._queued: set[Key] = set()
        self._busy: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the worker threads (once)."""
        if self._threads:
            return
        for number in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"kingest-reconcile-{number}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def add(self, namespace: str, name: str) -> None:
        """Reconcile `namespace/name` soon (after the reconcile of it already running)."""
        key = (namespace, name)
        with self._changed:
            if key in self._queued:
                return
            self._queued.add(key)
            if key not in self._busy:
                self._queue.append(key)
                self._changed.notify()

    def _take(self) -> Key:
        with self._changed:
            while not self._queue:
                self._changed.wait()
            key = self._queue.popleft()
            self._queued.discard(key)
            self._busy.add(key)
            return key

    def _done(self, key: Key) -> None:
        with self._changed:
            self._busy.discard(key)
            if key in self._queued:
                self._queue.append(key)
                self._changed.notify()

    def _run(self) -> None:
        self._ready()
        while True:
            key = self._take()
            try:
                self._work(*key)
                self._failures.pop(key, None)
            except Exception as exc:
                self._retry_later(key, exc)
            finally:
                self._done(key)

    def _retry_later(self, key: Key, exc: Exception) -> None:
        attempt = self._failures.get(key, 0)
        self._failures[key] = attempt + 1
        delay = min(2**attempt, MAX_RETRY_DELAY_S)
        detail = f"{exc.status} {exc.reason}" if isinstance(exc, k8s.ApiException) else repr(exc)
        log.error("reconciling %s/%s failed (%s); retrying in %d s", *key, detail, delay)
        log.debug("reconcile failure", exc_info=True)
        timer = threading.Timer(delay, self.add, key)
        timer.daemon = True
        timer.start()
