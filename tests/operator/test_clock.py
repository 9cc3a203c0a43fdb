"""The test clock: the file's time, read again whenever the file changes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kingest.operator import clock


def renamed_over(path: Path, text: str) -> None:
    partial = path.with_suffix(".new")
    partial.write_text(text)
    partial.replace(path)


def test_each_change_of_the_clock_file_is_seen_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clock"
    monkeypatch.setenv(clock.CLOCK_FILE_ENV, str(path))
    renamed_over(path, "2030-01-01T00:00:00Z")
    assert clock.now() == datetime(2030, 1, 1, tzinfo=UTC)
    assert clock.now() == datetime(2030, 1, 1, tzinfo=UTC)
    # Renamed over it, as the tests move the clock: the same length, within microseconds.
    for minute in range(1, 6):
        renamed_over(path, f"2030-01-01T00:0{minute}:00Z")
        assert clock.now() == datetime(2030, 1, 1, 0, minute, tzinfo=UTC)
    # Rewritten in place with another length.
    path.write_text("2030-01-01T00:10:00+00:00")
    assert clock.now() == datetime(2030, 1, 1, 0, 10, tzinfo=UTC)


def test_without_a_clock_file_the_system_clock_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock.CLOCK_FILE_ENV, raising=False)
    before = datetime.now(UTC)
    assert before <= clock.now() <= datetime.now(UTC)
