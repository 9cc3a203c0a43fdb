"""SlotTimer wakes Ingestions at their slots (a real event loop, a clock file)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kingest.operator import clock
from kingest.operator.scheduler import SlotTimer


class Woken:
    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []
        self.event = asyncio.Event()

    def __call__(self, namespace: str, name: str) -> None:
        self.keys.append((namespace, name))
        self.event.set()


async def fired(woken: Woken, timeout: float) -> bool:
    try:
        await asyncio.wait_for(woken.event.wait(), timeout)
    except TimeoutError:
        return False
    return True


def run(test: Callable[[], Awaitable[Any]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


def test_a_due_wake_up_fires_once_and_a_replaced_one_never() -> None:
    async def scenario() -> None:
        woken = Woken()
        timer = SlotTimer(woken)
        timer.start()
        soon = datetime.now(UTC) + timedelta(milliseconds=200)
        timer.set(("ns", "replaced"), soon)
        timer.set(("ns", "replaced"), soon + timedelta(hours=1))
        timer.set(("ns", "a"), soon)
        assert await fired(woken, 3)
        await asyncio.sleep(0.3)
        assert woken.keys == [("ns", "a")]
        assert timer.pending(("ns", "replaced")) == soon + timedelta(hours=1)
        await timer.stop()

    run(scenario)


def test_the_clock_file_drives_wake_ups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "clock"
    path.write_text("2030-01-01T00:00:00Z")
    monkeypatch.setenv(clock.CLOCK_FILE_ENV, str(path))
    assert clock.now() == datetime(2030, 1, 1, tzinfo=UTC)

    async def scenario() -> None:
        woken = Woken()
        timer = SlotTimer(woken)
        timer.start()
        timer.set(("ns", "a"), datetime(2030, 1, 1, 0, 1, tzinfo=UTC))
        assert not await fired(woken, 1.5)  # real time passes, the file's time does not
        path.write_text("2030-01-01T00:01:00Z")
        assert await fired(woken, 3)
        assert woken.keys == [("ns", "a")]
        await timer.stop()

    run(scenario)


def test_an_unreadable_clock_file_says_which_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clock"
    path.write_text("tomorrow")
    monkeypatch.setenv(clock.CLOCK_FILE_ENV, str(path))
    with pytest.raises(clock.ClockFileError, match=f"{path}.*'tomorrow'"):
        clock.now()


def test_thousand_wake_ups_on_one_minute_fire_within_two_seconds() -> None:
    async def scenario() -> None:
        fired_at: dict[tuple[str, str], float] = {}
        done = asyncio.Event()

        def wake(namespace: str, name: str) -> None:
            fired_at[(namespace, name)] = time.monotonic()
            if len(fired_at) == 1000:
                done.set()

        timer = SlotTimer(wake)
        timer.start()
        at = datetime.now(UTC) + timedelta(seconds=1)
        for i in range(1000):
            timer.set(("ns", f"i{i}"), at)
        start = time.monotonic() + (at - datetime.now(UTC)).total_seconds()
        await asyncio.wait_for(done.wait(), 5)
        assert max(fired_at.values()) - start < 2.0
        await timer.stop()

    run(scenario)
