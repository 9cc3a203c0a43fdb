"""A queue of Ingestions to reconcile, worked off by a fixed number of asyncio tasks.

Whatever notices a change (an Ingestion event, a Job or Pod event, a schedule slot) only
`add`s the Ingestion's key and returns, so no kopf handler waits for a reconcile. A key is
queued at most once however often it is added, and never worked on by two tasks at once (two
concurrent reconciles of one Ingestion could each see "no active run" and start two runs):
added while being worked on, it is queued again when that work ends, so a burst of events
costs one extra round. Failed work is retried with a growing delay: the next event may be far
away (a stale status, a run not started).

kopf serialises the handlers of one object, but a reconcile is caused by three kinds of
object (the Ingestion, its Jobs, its Pods) and by the clock, so one queue keyed by the
Ingestion is what gives one reconcile at a time per Ingestion.

Two lanes: work that may start a run (a new or changed Ingestion, a due slot) goes first;
work that only follows a run's progress (its Job's or Pod's changes) waits `settle` seconds,
so that the steps of a run close together (Pod created, started, finished; Job complete) cost
one status update rather than one each, and never delays the start of another run: it also
waits while any start is queued or under way (at most `hold` seconds past its settling), so
the last runs of a slot starting 1,000 are not slowed by the status writes of the first.

Everything here runs on one event loop, and so does the work itself: it awaits the API server
there (see `kingest.operator.reconciler`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from kubernetes import client as k8s

from kingest.operator import tasks

log = logging.getLogger("kingest.operator.workqueue")
Key = tuple[str, str]  # (namespace, name)
Lane = Literal["start", "follow"]
MAX_RETRY_DELAY_S = 60
MAX_FOLLOW_HOLD_S = 10.0


class WorkQueue:
    """Awaits `work(namespace, name)` for added keys on `workers` tasks (after `start`, once
    `ready`)."""

    def __init__(
        self,
        work: Callable[[str, str], Awaitable[None]],
        workers: int = 16,
        settle: float = 1.0,
        ready: Callable[[], Awaitable[object]] | None = None,
        hold: float = MAX_FOLLOW_HOLD_S,
        on_starting: Callable[[bool], None] | None = None,
    ) -> None:
        """`ready`: awaited before any work starts (the first listing of the Jobs and Pods);
        `hold`: how long settled follow-up work waits at most for the starts to end;
        `on_starting`: told when `starting` turns true (a start is queued) and false again."""
        self._work, self._workers, self._settle, self._ready = work, workers, settle, ready
        self._hold, self._on_starting = hold, on_starting
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
        # Idle workers, each waiting on its future; `_wake` resolves one.
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the worker tasks on the running loop (once)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name=f"kingest-reconcile-{number}")
                for number in range(self._workers)
            ]

    async def stop(self) -> None:
        """Cancel the workers (work under way is cancelled with them)."""
        await tasks.cancel(self._tasks)
        self._tasks = []
        if self._starts and self._on_starting is not None:
            self._on_starting(False)  # nothing will be started any more

    def add(self, namespace: str, name: str) -> None:
        """Reconcile `namespace/name` before any progress update (after the reconcile of it
        already running)."""
        self._add((namespace, name), "start")

    def follow(self, namespace: str, name: str) -> None:
        """Reconcile `namespace/name` in `settle` seconds, unless it is queued already."""
        self._add((namespace, name), "follow")

    def starting(self) -> bool:
        """Whether work that may start a run is queued or under way (what can wait, waits)."""
        return self._starts > 0

    def _add(self, key: Key, lane: Lane) -> None:
        queued = self._queued.get(key)
        if queued == "start" or queued == lane:
            return
        self._queued[key] = lane
        if lane == "start":
            self._starts += 1
            if self._starts == 1 and self._on_starting is not None:
                self._on_starting(True)
        if key not in self._busy:
            self._enqueue(key, lane)

    def _enqueue(self, key: Key, lane: Lane) -> None:
        if lane == "start":
            self._start.append(key)
            self._wake()
        else:
            loop = asyncio.get_running_loop()
            due = loop.time() + self._settle
            self._follow.append((due, key))
            loop.call_at(due, self._wake)
            # Held back by starts: taken then at the latest (`_done` wakes when they end).
            loop.call_at(due + self._hold, self._wake)

    def _wake(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _take_now(self) -> Key | None:
        """The next key to work on now, if any (starts first, then settled follow-ups)."""
        while self._start and self._queued.get(self._start[0]) != "start":
            self._start.popleft()
        while self._follow and self._queued.get(self._follow[0][1]) != "follow":
            self._follow.popleft()
        if self._start:
            key = self._start.popleft()
            self._busy_starting.add(key)
        elif self._follow_ready():
            key = self._follow.popleft()[1]
        else:
            return None
        del self._queued[key]
        self._busy.add(key)
        return key

    async def _take(self) -> Key:
        while (key := self._take_now()) is None:
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await waiter
        # More may be waiting: hand on the wake-up, so no key waits while a worker idles.
        if self._start or self._follow_ready():
            self._wake()
        return key

    def _follow_ready(self) -> bool:
        """Whether the first follow-up may be worked on now: settled, and no start queued or
        under way (or held back for `hold` seconds already)."""
        if not self._follow:
            return False
        due, now = self._follow[0][0], asyncio.get_running_loop().time()
        return due <= now and (self._starts == 0 or due + self._hold <= now)

    def _done(self, key: Key) -> None:
        self._busy.discard(key)
        if key in self._busy_starting:
            self._busy_starting.discard(key)
            self._starts -= 1
            if self._starts == 0:
                self._wake()  # the follow-ups held back by the starts
                if self._on_starting is not None:
                    self._on_starting(False)
        lane = self._queued.get(key)
        if lane is not None:
            self._enqueue(key, lane)

    async def _run(self) -> None:
        if self._ready is not None:
            await self._ready()
        while True:
            key = await self._take()
            try:
                await self._work(*key)
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
        asyncio.get_running_loop().call_later(delay, self.add, *key)
