"""Cron schedules in a time zone: which slots exist, which one is due, which were missed.

Pure functions over plain values; the operator passes `now` in, so tests move the clock
instead of sleeping.

Slots are matched on the wall clock of the schedule's time zone, with Vixie cron's rule for
daylight-saving changes, which is what people mean by "every day at 02:30":

- a schedule with a fixed hour (`30 2 * * *`) fires once per matching wall-clock time: when
  the clocks go back it fires at the first 02:30 only, and when they spring forward past
  02:30 it fires at the end of the gap (03:00) rather than not at all;
- a schedule that runs every hour (`*/15 * * * *`, hour field `*`) follows real time: it
  fires in both passes of a repeated hour and has no slots in a skipped one.
"""

from __future__ import annotations

import functools
import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
# A schedule can match as rarely as once in four years (29 February on a given weekday
# needs up to 28 years); looking further ahead than this means it never matches.
_HORIZON_DAYS = 366 * 29
_SLACK = timedelta(hours=3)
# Zones whose UTC offset never changes (tzdata's Etc/ area and its aliases): their wall clock
# runs in step with real time, so their slots need none of the clock-change handling.
_FIXED_OFFSET_ZONES = frozenset({"UTC", "UCT", "GMT", "Zulu", "Universal", "Greenwich"})


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
    """A parsed 5-field cron expression (or `@hourly`-style macro) in an IANA time zone."""

    expression: str
    time_zone: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool
    hour_restricted: bool

    @classmethod
    def parse(cls, expression: str, time_zone: str = "UTC") -> Schedule:
        """Parse `expression` in `time_zone`; raises `InvalidSchedule` saying what is wrong.

        Cached: every reconcile of a scheduled Ingestion parses its schedule, and proving that
        one fires at all walks its slots.
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
        minutes, hours, days, months, weekdays = (
            _parse_field(part, field) for part, field in zip(parts, _FIELDS, strict=True)
        )
        schedule = cls(
            expression=expression,
            time_zone=time_zone,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=weekdays,
            day_restricted=not parts[2].startswith("*"),
            weekday_restricted=not parts[4].startswith("*"),
            hour_restricted=parts[1] != "*",
        )
        if schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise InvalidSchedule(f"{expression!r} never fires (no such date)")
        return schedule

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def fixed_offset(self) -> bool:
        """Whether the time zone's UTC offset never changes."""
        return self.time_zone.removeprefix("Etc/") in _FIXED_OFFSET_ZONES or (
            self.time_zone.startswith("Etc/GMT")
        )

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        # Classic cron: when both day fields are restricted, either one matching is enough.
        if self.day_restricted and self.weekday_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def _wall_times(self, start: datetime) -> Iterator[datetime]:
        """Matching naive wall-clock times from `start` (its minute) on, in order."""
        first = start.replace(second=0, microsecond=0)
        day = first.replace(hour=0, minute=0)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for hour in hours:
                    if day < first and hour < first.hour:
                        continue
                    for minute in minutes:
                        wall = day.replace(hour=hour, minute=minute)
                        if wall >= first:
                            yield wall
            day += timedelta(days=1)

    def _instants(self, wall: datetime) -> list[datetime]:
        """The UTC instants at which wall-clock time `wall` fires (see the module docstring)."""
        zone = self.zone
        first = wall.replace(tzinfo=zone, fold=0)
        second = wall.replace(tzinfo=zone, fold=1)
        first_utc, second_utc = first.astimezone(UTC), second.astimezone(UTC)
        if first_utc.astimezone(zone).replace(tzinfo=None) != wall:
            # The wall time falls in a spring-forward gap: it does not exist.
            if not self.hour_restricted:
                return []
            return [_transition(second_utc, first_utc, zone)]
        if first_utc != second_utc and not self.hour_restricted:
            return [first_utc, second_utc]
        return [first_utc]

    def iter_slots(self, after: datetime) -> Iterator[datetime]:
        """Slots strictly after `after` (an aware datetime), in UTC, in order."""
        zone = self.zone
        local = after.astimezone(zone).replace(tzinfo=None)
        if self.fixed_offset:
            for wall in self._wall_times(local):
                if wall > local:
                    yield wall.replace(tzinfo=zone).astimezone(UTC)
            return
        pending: list[datetime] = []
        # Around a clock change, wall-clock order and real order differ by at most the change
        # (an hour or two): an instant is final once the wall clock is 3 hours past it.
        for wall in self._wall_times(local - _SLACK):
            settled = wall.replace(tzinfo=zone).astimezone(UTC) - _SLACK
            while pending and pending[0] <= settled:
                yield heapq.heappop(pending)
            for instant in self._instants(wall):
                if instant > after:
                    heapq.heappush(pending, instant)
        while pending:
            yield heapq.heappop(pending)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first slot strictly after `moment` (an aware datetime), in UTC; None if never."""
        return next(self.iter_slots(moment), None)


@functools.lru_cache(maxsize=1024)
def _parse_cached(cls: type[Schedule], expression: str, time_zone: str) -> Schedule:
    return cls._parse_uncached(expression, time_zone)


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first whole minute in (before, after] that has `after`'s UTC offset."""
    offset = after.astimezone(zone).utcoffset()
    low, high = 0, int((after - before).total_seconds() // 60)
    while low < high:
        middle = (low + high) // 2
        if (before + timedelta(minutes=middle)).astimezone(zone).utcoffset() == offset:
            high = middle
        else:
            low = middle + 1
    return before + timedelta(minutes=low)


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
