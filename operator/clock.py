"""The operator's one source of "now".

Everything that compares against the time (schedule slots, status timestamps) asks `now()`.
Test hook: `KINGEST_CLOCK_FILE=<path>` makes the whole operator read the time from that
file (an ISO 8601 timestamp such as `2026-03-01T11:00:00Z`, rewritten by the test) instead
of the system clock, so end-to-end tests move the clock instead of sleeping. The scheduler
polls the file every 10 ms and re-checks every schedule when it changes. Not for production.

The file is parsed again only when it changed (its inode, modification time or size; tests
write it whole and rename it over the old one): a slot starting 1,000 runs asks the time a few
thousand times within two seconds, and opening, reading and parsing the file each time was ~6 %
of the operator's samples in a `bench/schedule_scale.py` slot under py-spy, a cost the system
clock does not have.
"""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime

CLOCK_FILE_ENV = "KINGEST_CLOCK_FILE"


class ClockFileError(RuntimeError):
    """The clock file exists but does not hold an ISO 8601 timestamp."""


def clock_file() -> str | None:
    """The test clock's file, when the operator runs on one."""
    return os.environ.get(CLOCK_FILE_ENV) or None


def now() -> datetime:
    """The current time (aware, UTC): the system clock, or the test clock file's time."""
    path = clock_file()
    if path is None:
        return datetime.now(UTC)
    stat = os.stat(path)
    return _read(path, stat.st_ino, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _read(path: str, inode: int, mtime_ns: int, size: int) -> datetime:
    """The clock file's time; the file's identity and version are the cache's key."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read().strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ClockFileError(
            f"{CLOCK_FILE_ENV} file {path}: {text!r} is no ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def clock_file_version() -> tuple[int, int] | None:
    """Changes whenever the clock file is rewritten (None: no clock file, or not there yet)."""
    path = clock_file()
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size
