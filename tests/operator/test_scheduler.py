"""SlotTimer wakes Ingestions at their slots (real threads, a clock file)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kingest.operator import clock
from kingest.operator.scheduler import SlotTimer


class Woken:
    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []
        self.event = threading.Event()

    def __call__(self, namespace: str, name: str) -> None:
        self.keys.append((namespace, name))
        self.event.set()


def test_a_due_wake_up_fires_once_and_a_replaced_one_never() -> None:
    woken = Woken()
    timer = SlotTimer(woken, workers=2)
    timer.start()
    try:
        soon = datetime.now(UTC) + timedelta(milliseconds=200)
        timer.set(("ns", "replaced"), soon)
        timer.set(("ns", "replaced"), soon + timedelta(hours=1))
        timer.set(("ns", "a"), soon)
        assert woken.event.wait(3)
        time.sleep(0.3)
        assert woken.keys == [("ns", "a")]
        assert timer.pending(("ns", "replaced")) == soon + timedelta(hours=1)
    finally:
        timer.stop()


def test_the_clock_file_drives_wake_ups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "clock"
    path.write_text("2030-01-01T00:00:00Z")
    monkeypatch.setenv(clock.CLOCK_FILE_ENV, str(path))
    assert clock.now() == datetime(2030, 1, 1, tzinfo=UTC)
    woken = Woken()
    timer = SlotTimer(woken, workers=2)
    timer.start()
    try:
        timer.set(("ns", "a"), datetime(2030, 1, 1, 0, 1, tzinfo=UTC))
        assert not woken.event.wait(1.5)  # real time passes, the file's time does not
        path.write_text("2030-01-01T00:01:00Z")
        assert woken.event.wait(3)
        assert woken.keys == [("ns", "a")]
    finally:
        timer.stop()


def test_an_unreadable_clock_file_says_which_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clock"
    path.write_text("tomorrow")
    monkeypatch.setenv(clock.CLOCK_FILE_ENV, str(path))
    with pytest.raises(clock.ClockFileError, match=f"{path}.*'tomorrow'"):
        clock.now()


def test_thousand_wake_ups_on_one_minute_fire_within_two_seconds() -> None:
    fired: dict[tuple[str, str], float] = {}
    done = threading.Event()

    def wake(namespace: str, name: str) -> None:
        fired[(namespace, name)] = time.monotonic()
        if len(fired) == 1000:
            done.set()

    timer = SlotTimer(wake, workers=16)
    timer.start()
    try:
        at = datetime.now(UTC) + timedelta(seconds=1)
        for i in range(1000):
            timer.set(("ns", f"i{i}"), at)
        start = time.monotonic() + (at - datetime.now(UTC)).total_seconds()
        assert done.wait(5)
        assert max(fired.values()) - start < 2.0
    finally:
        timer.stop()
