"""Cron schedules in a time zone: which slots exist, which one is due, which were missed.

Pure functions over plain values; the operator passes `now` in, so tests move the clock
instead of sleeping.

Slots come from `cronsim`, which follows Debian cron's rules for daylight-saving changes,
what people mean by "every day at 02:30":

- a schedule with a fixed hour (`30 2 * * *`) fires once per matching wall-clock time: when
  the clocks go back it fires at the first 02:30 only, and when they spring forward past
  02:30 it fires at the end of the gap (03:00) rather than not at all;
- a schedule that runs every hour (`*/15 * * * *`, hour field `*`) follows real time: it
  fires in both passes of a repeated hour and has no slots in a skipped one.

The expression is checked here first, field by field, so that a wrong one is rejected with a
message saying which field and why (cronsim says only "Bad minute"), and only CronJob's
syntax is accepted (no `L`, `W` or `#` extensions, which a CronJob would refuse).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


class InvalidSchedule(ValueError):
    """A cron expression or time zone that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, tuple(_MONTHS)),
    _Field("day of week", 0, 7, tuple(_WEEKDAYS)),
)


def _value(text: str, field: _Field) -> int:
    lowered = text.lower()
    if field.names and lowered in field.names:
        return field.names.index(lowered) + (1 if field.name == "month" else 0)
    if not text.isdigit():
        raise InvalidSchedule(f"{field.name}: {text!r} is not a number")
    value = int(text)
    if not field.low <= value <= field.high:
        raise InvalidSchedule(f"{field.name}: {value} is outside {field.low}-{field.high}")
    return value


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    """The values `text` allows in `field`, or InvalidSchedule naming the field and why."""
    values: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\d+))?", part)
        if not match:
            raise InvalidSchedule(f"{field.name}: cannot read {part!r}")
        span, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise InvalidSchedule(f"{field.name}: step must be at least 1")
        if span == "*":
            low, high = field.low, field.high
        elif "-" in span:
            low, high = (_value(v, field) for v in span.split("-"))
            if low > high:
                raise InvalidSchedule(f"{field.name}: range {span!r} runs backwards")
        else:
            low = _value(span, field)
            high = field.high if step_text else low
        values.update(range(low, high + 1, step))
    if field.name == "day of week" and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A checked 5-field cron expression (or `@hourly`-style macro) in an IANA time zone."""

    expression: str
    time_zone: str
    fields: str  # the five fields, macros expanded: what cronsim iterates

    @classmethod
    def parse(cls, expression: str, time_zone: str = "UTC") -> Schedule:
        """Parse `expression` in `time_zone`; raises `InvalidSchedule` saying what is wrong.

        Cached: every reconcile of a scheduled Ingestion parses its schedule.
        """
        return _parse_cached(cls, expression, time_zone)

    @classmethod
    def _parse_uncached(cls, expression: str, time_zone: str) -> Schedule:
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidSchedule(
                f"unknown time zone {time_zone!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        text = MACROS.get(expression.strip().lower(), expression.strip())
        if text.startswith("@"):
            raise InvalidSchedule(f"unknown macro {expression!r}; known: {', '.join(MACROS)}")
        parts = text.split()
        if len(parts) != 5:
            raise InvalidSchedule(
                f"{expression!r} has {len(parts)} fields; a cron schedule has 5 "
                "(minute hour day-of-month month day-of-week) or is a macro like @hourly"
            )
        for part, field in zip(parts, _FIELDS, strict=True):
            _parse_field(part, field)
        schedule = cls(expression=expression, time_zone=time_zone, fields=" ".join(parts))
        try:
            # cronsim refuses a day that never exists (31 February) when it starts.
            CronSim(schedule.fields, datetime(2000, 1, 1, tzinfo=schedule.zone))
        except CronSimError:
            raise InvalidSchedule(f"{expression!r} never fires (no such date)") from None
        return schedule

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def iter_slots(self, after: datetime) -> Iterator[datetime]:
        """Slots strictly after `after` (an aware datetime), in UTC, in order."""
        # The first few are what a reconcile asks for (the due slot, the next one), and
        # every Ingestion on one schedule asks for the same: cached, as starting cronsim
        # costs more than the rest of a scheduled Ingestion's plan.
        head = _first_slots(self.fields, self.time_zone, after)
        yield from head
        if len(head) == _CACHED_SLOTS:
            yield from itertools.islice(_slots(self.fields, self.time_zone, after), len(head), None)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first slot strictly after `moment` (an aware datetime), in UTC; None if never."""
        return next(self.iter_slots(moment), None)


_CACHED_SLOTS = 3


def _slots(fields: str, time_zone: str, after: datetime) -> Iterator[datetime]:
    for slot in CronSim(fields, after.astimezone(ZoneInfo(time_zone))):
        yield slot.astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _first_slots(fields: str, time_zone: str, after: datetime) -> tuple[datetime, ...]:
    return tuple(itertools.islice(_slots(fields, time_zone, after), _CACHED_SLOTS))


@functools.lru_cache(maxsize=1024)
def _parse_cached(cls: type[Schedule], expression: str, time_zone: str) -> Schedule:
    return cls._parse_uncached(expression, time_zone)


@dataclass(frozen=True)
class Decision:
    """What to do at `now`: run `slot` (or nothing), and which slots were skipped."""

    slot: datetime | None
    skipped: int
    last_skipped: datetime | None
    next_slot: datetime | None


def decide(
    schedule: Schedule,
    now: datetime,
    last_scheduled: datetime | None,
    created: datetime,
    starting_deadline_seconds: int | None = None,
) -> Decision:
    """Which slot, if any, should run at `now`.

    Slots after `last_scheduled` (or after `created`, for a new schedule) and not later than
    `now` are due. Only the most recent one runs, so an operator that was down for a day
    starts at most one catch-up run, never a burst; the older ones count as skipped. With a
    `starting_deadline_seconds`, a most recent slot older than that is skipped too.
    """
    since = last_scheduled or created
    latest: datetime | None = None
    previous: datetime | None = None
    due = 0
    for slot in schedule.iter_slots(since):
        if slot > now:
            next_slot = slot
            break
        due += 1
        previous, latest = latest, slot
    else:
        next_slot = None
    if latest is None:
        return Decision(None, 0, None, next_slot)
    late = (
        starting_deadline_seconds is not None
        and (now - latest).total_seconds() > starting_deadline_seconds
    )
    if late:
        return Decision(None, due, latest, next_slot)
    return Decision(latest, due - 1, previous, next_slot)
