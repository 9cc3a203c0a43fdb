"""Wake each scheduled Ingestion's reconcile at its next slot (or retry), from one asyncio task.

The task keeps a heap of (due time, Ingestion) and, at each due time, hands every due
Ingestion to the work queue (`wake`, which only queues), so 1,000 Ingestions on the same
minute start within the queue's throughput rather than one after another. The heap holds
only the latest wake-up per Ingestion (older entries are dropped when popped); whether a slot
really runs is decided by `plan`, against the API server's state, so an early or repeated
wake-up is harmless.

One task for all Ingestions rather than a `@kopf.timer` each: a timer ticks at a fixed
interval (every Ingestion would wake every few seconds to find nothing due, and a slot would
fire up to one interval late), while the slot times are known exactly from the status.

With the test clock (`KINGEST_CLOCK_FILE`, see `kingest.operator.clock`) the task polls
the file every 10 ms (a `stat`; the file is read again only when it changed) and re-checks
every wake-up against the file's time when it changes. The system clock has no such delay (the
task sleeps until the first due time), so the poll is kept short: at ten times a second it
added 50 ms on average to every slot `bench/schedule_scale.py` timed from the file's write.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable
from datetime import datetime

from kingest.operator import clock, tasks

log = logging.getLogger("kingest.operator.scheduler")
Key = tuple[str, str]  # (namespace, name)
_CLOCK_POLL_S = 0.01
_IDLE_WAIT_S = 60.0


class SlotTimer:
    """Calls `wake(namespace, name)` when an Ingestion's next slot is due (after `start`)."""

    def __init__(self, wake: Callable[[str, str], None]) -> None:
        self._wake = wake
        self._heap: list[tuple[datetime, int, Key]] = []
        self._due: dict[Key, datetime] = {}
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the timer task on the running loop (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="kingest-slots")

    async def stop(self) -> None:
        """Stop the timer task."""
        await tasks.cancel([self._task])
        self._task = None

    def set(self, key: Key, when: datetime | None) -> None:
        """Wake `key` at `when` (replacing its previous wake-up); None: never."""
        if when is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._order), key))
        self._changed.set()

    def pending(self, key: Key) -> datetime | None:
        """The wake-up currently set for `key`."""
        return self._due.get(key)

    def _pop_due(self, now: datetime) -> list[Key]:
        due: list[Key] = []
        while self._heap and self._heap[0][0] <= now:
            when, _, key = heapq.heappop(self._heap)
            if self._due.get(key) == when:
                del self._due[key]
                due.append(key)
        return due

    def _wait_s(self, now: datetime) -> float:
        if clock.clock_file() is not None:
            return _CLOCK_POLL_S
        if self._heap:
            return max(min((self._heap[0][0] - now).total_seconds(), _IDLE_WAIT_S), 0.0)
        return _IDLE_WAIT_S

    async def _loop(self) -> None:
        version = clock.clock_file_version()
        while True:
            try:
                now = clock.now()
            except (OSError, clock.ClockFileError) as exc:
                log.error("cannot read the clock: %s", exc)
                await asyncio.sleep(_CLOCK_POLL_S)
                continue
            for namespace, name in self._pop_due(now):
                self._wake(namespace, name)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._wait_s(now))
            if clock.clock_file() is not None:
                latest = clock.clock_file_version()
                if latest != version:
                    version = latest
                    log.info("clock file changed: now %s", clock.now().isoformat())
