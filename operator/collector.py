"""Python's cyclic garbage collector, kept out of the way while runs are being started.

The operator keeps every Ingestion, Job and Pod it watches in memory, so the collector's
older generations are large: with 1,000 scheduled Ingestions a full collection took 100-205 ms,
and a `bench/schedule_scale.py` slot that started 1,000 runs in ~2 s spent 127-352 ms of them
collecting (one or two full collections, and ~100 young ones set off by the Jobs' replies and
watch events). Almost nothing the operator makes is garbage only the collector can find: its
objects are JSON bodies, models and coroutines, freed by reference counting as they go.

So:
- `settle` freezes what start-up built (modules, the API models, pydantic's validators: ~94,000
  objects): no collection walks them again;
- `StartsHold` holds collections off while runs are being started (`WorkQueue.starting`), at
  most `limit_s` seconds at a time, and lets them resume once the starts are done: the slot's
  garbage is collected right after its last run started, not in the middle.
"""

from __future__ import annotations

import asyncio
import gc

START_HOLD_LIMIT_S = 10.0


def settle() -> None:
    """Collect once, and keep every object that survives (what start-up built) out of all later
    collections."""
    gc.collect()
    gc.freeze()


class StartsHold:
    """`starting(True)` holds the collector off, `starting(False)` lets it go (on the running
    loop). A hold ends after `limit_s` at the latest, so garbage never piles up for long; a
    collector someone else disabled stays disabled."""

    def __init__(self, limit_s: float = START_HOLD_LIMIT_S) -> None:
        self.limit_s = limit_s
        self._release: asyncio.TimerHandle | None = None

    @property
    def holding(self) -> bool:
        return self._release is not None

    def __call__(self, starting: bool) -> None:
        if not starting:
            self.release()
        elif self._release is None and gc.isenabled():
            gc.disable()
            self._release = asyncio.get_running_loop().call_later(self.limit_s, self.release)

    def release(self) -> None:
        """Let the collector run again (once the starts are done, or `limit_s` has passed)."""
        if self._release is not None:
            self._release.cancel()
            self._release = None
            gc.enable()
