"""Wake each scheduled Ingestion's reconcile at its next slot.

One thread keeps a heap of (due time, Ingestion) and hands due Ingestions to a pool of
workers, so 1,000 Ingestions on the same minute start within the pool's throughput rather
than one after another. The heap holds only the latest wake-up per Ingestion (older entries
are dropped when popped); whether a slot really runs is decided by `plan`, against the
API server's state, so an early or repeated wake-up is harmless.

With the test clock (`KINGEST_CLOCK_FILE`, see `kingest.operator.clock`) the thread polls
the file ten times a second and re-checks every wake-up against the file's time when it changes.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from kingest.operator import clock

log = logging.getLogger("kingest.operator.scheduler")
Key = tuple[str, str]  # (namespace, name)
_CLOCK_POLL_S = 0.1
_IDLE_WAIT_S = 60.0


class SlotTimer:
    """Calls `wake(namespace, name)` on a worker pool when an Ingestion's next slot is due."""

    def __init__(self, wake: Callable[[str, str], None], workers: int = 16) -> None:
        self._wake = wake
        self._heap: list[tuple[datetime, int, Key]] = []
        self._due: dict[Key, datetime] = {}
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="kingest-slot")
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        """Start the timer thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="kingest-slots", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the timer thread; wake-ups already handed to workers still run."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        self._pool.shutdown(wait=False)

    def set(self, key: Key, when: datetime | None) -> None:
        """Wake `key` at `when` (replacing its previous wake-up); None: never."""
        with self._changed:
            if when is None:
                self._due.pop(key, None)
                return
            if self._due.get(key) == when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, next(self._order), key))
            self._changed.notify()

    def pending(self, key: Key) -> datetime | None:
        """The wake-up currently set for `key`."""
        with self._changed:
            return self._due.get(key)

    def _pop_due(self, now: datetime) -> list[Key]:
        due: list[Key] = []
        while self._heap and self._heap[0][0] <= now:
            when, _, key = heapq.heappop(self._heap)
            if self._due.get(key) == when:
                del self._due[key]
                due.append(key)
        return due

    def _loop(self) -> None:
        version = clock.clock_file_version()
        while True:
            with self._changed:
                if self._stopping:
                    return
                try:
                    now = clock.now()
                except (OSError, clock.ClockFileError) as exc:
                    log.error("cannot read the clock: %s", exc)
                    self._changed.wait(_CLOCK_POLL_S)
                    continue
                due = self._pop_due(now)
                if not due:
                    if clock.clock_file() is not None:
                        wait = _CLOCK_POLL_S
                    elif self._heap:
                        wait = min((self._heap[0][0] - now).total_seconds(), _IDLE_WAIT_S)
                    else:
                        wait = _IDLE_WAIT_S
                    self._changed.wait(max(wait, 0.0))
                    if clock.clock_file() is not None:
                        latest = clock.clock_file_version()
                        if latest != version:
                            version = latest
                            log.info("clock file changed: now %s", clock.now().isoformat())
                    continue
            for namespace, name in due:
                self._pool.submit(self._wake, namespace, name)
