"""A queue of Ingestions to reconcile, worked off by a pool of threads (client-go's workqueue).

Whatever notices a change (an Ingestion event, a Job or Pod watch, a schedule slot) only
`add`s the Ingestion's key and returns, so no watch waits for a reconcile. A key is queued at
most once however often it is added, and never worked on by two threads at once (two
concurrent reconciles of one Ingestion could each see "no active run" and start two runs):
added while being worked on, it is queued again when that work ends, so a burst of events
costs one extra round. Failed work is retried with a growing delay: the next event may be far
away (a stale status, a run not started).

Two lanes: work that may start a run (a new or changed Ingestion, a due slot) goes first;
work that only follows a run's progress (its Job's or Pod's changes) waits `settle` seconds,
so that the steps of a run close together (Pod created, started, finished; Job complete) cost
one status update rather than one each, and never delays the start of another run.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from kubernetes import client as k8s

log = logging.getLogger("kingest.operator.workqueue")
Key = tuple[str, str]  # (namespace, name)
Lane = Literal["start", "follow"]
MAX_RETRY_DELAY_S = 60


class WorkQueue:
    """Calls `work(namespace, name)` for added keys on `workers` threads, once `ready()`."""

    def __init__(
        self,
        work: Callable[[str, str], None],
        workers: int = 16,
        ready: Callable[[], object] = lambda: True,
        settle: float = 1.0,
    ) -> None:
        self._work, self._ready, self._workers, self._settle = work, ready, workers, settle
        self._start: collections.deque[Key] = collections.deque()
        self._follow: collections.deque[tuple[float, Key]] = collections.deque()
        # The lane each queued key waits in; a deque entry whose lane differs is stale.
        self._queued: dict[Key, Lane] = {}
        self._busy: set[Key] = set()
        # Keys taken from the start lane and not done yet; with those queued in it, counted
        # in `_starts`, so that `starting` costs nothing however long the lane.
        self._busy_starting: set[Key] = set()
        self._starts = 0
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
        """Reconcile `namespace/name` before any progress update (after the reconcile of it
        already running)."""
        self._add((namespace, name), "start")

    def starting(self) -> bool:
        """Whether work that may start a run is queued or under way (what can wait, waits)."""
        return self._starts > 0

    def follow(self, namespace: str, name: str) -> None:
        """Reconcile `namespace/name` in `settle` seconds, unless it is queued already."""
        self._add((namespace, name), "follow")

    def _add(self, key: Key, lane: Lane) -> None:
        with self._changed:
            queued = self._queued.get(key)
            if queued == "start" or queued == lane:
                return
            self._queued[key] = lane
            if lane == "start":
                self._starts += 1
            if key not in self._busy:
                self._enqueue(key, lane)

    def _enqueue(self, key: Key, lane: Lane) -> None:
        if lane == "start":
            self._start.append(key)
        else:
            self._follow.append((time.monotonic() + self._settle, key))
        self._changed.notify()

    def _take(self) -> Key:
        with self._changed:
            while True:
                while self._start and self._queued.get(self._start[0]) != "start":
                    self._start.popleft()
                while self._follow and self._queued.get(self._follow[0][1]) != "follow":
                    self._follow.popleft()
                if self._start:
                    key = self._start.popleft()
                    self._busy_starting.add(key)
                    break
                if self._follow:
                    due, key = self._follow[0]
                    wait = due - time.monotonic()
                    if wait <= 0:
                        self._follow.popleft()
                        break
                    self._changed.wait(wait)
                else:
                    self._changed.wait()
            del self._queued[key]
            self._busy.add(key)
            return key

    def _done(self, key: Key) -> None:
        with self._changed:
            self._busy.discard(key)
            if key in self._busy_starting:
                self._busy_starting.discard(key)
                self._starts -= 1
            lane = self._queued.get(key)
            if lane is not None:
                self._enqueue(key, lane)

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
