"""Cron slots in a time zone, and which one is due: pure functions, clock passed in."""

from datetime import UTC, datetime, timedelta

import pytest

from kingest.operator.schedule import _FIELDS, InvalidSchedule, Schedule, _parse_field, decide


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def first_slots(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    slots = schedule.iter_slots(after)
    return [next(slots) for _ in range(count)]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", utc(2026, 11, 25, 10, 7), utc(2026, 11, 25, 10, 15)),
        ("@hourly", utc(2026, 11, 25, 10, 0), utc(2026, 11, 25, 11, 0)),
        ("@daily", utc(2026, 11, 25, 10, 0), utc(2026, 11, 26, 0, 0)),
        ("@weekly", utc(2026, 11, 25, 10, 0), utc(2026, 11, 29, 0, 0)),  # a Sunday
        ("@monthly", utc(2026, 11, 25), utc(2026, 12, 1)),
        ("@yearly", utc(2026, 11, 25), utc(2027, 1, 1)),
        ("0 9 * * mon-fri", utc(2026, 11, 27, 9, 0), utc(2026, 11, 30, 9, 0)),  # Fri -> Mon
        ("0 0 29 feb *", utc(2026, 1, 1), utc(2028, 2, 29)),
        ("0 12 1,15 * *", utc(2026, 11, 2), utc(2026, 11, 15, 12)),
        ("30 6 * JAN,jul 7", utc(2026, 11, 25), utc(2027, 1, 3, 6, 30)),  # 7 is Sunday
    ],
)
def test_next_slot(expression: str, after: datetime, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(after) == expected


def test_day_of_month_and_weekday_both_restricted_match_either() -> None:
    schedule = Schedule.parse("0 0 13 * fri")
    assert first_slots(schedule, utc(2026, 11, 1), 3) == [
        utc(2026, 11, 6),  # a Friday
        utc(2026, 11, 13),  # the 13th (also a Friday)
        utc(2026, 11, 20),
    ]


def test_time_zone_shifts_slots() -> None:
    schedule = Schedule.parse("0 9 * * *", "Asia/Tokyo")
    assert schedule.next_after(utc(2026, 11, 25)) == utc(2026, 11, 26, 0, 0)


def test_a_fixed_time_in_the_spring_gap_fires_at_the_gap_end() -> None:
    # Europe/Berlin springs forward on 2026-03-29 at 02:00 -> 03:00 local (01:00 UTC).
    schedule = Schedule.parse("30 2 * * *", "Europe/Berlin")
    assert first_slots(schedule, utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: the gap's end, not skipped
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_a_fixed_time_in_the_repeated_hour_fires_once() -> None:
    # Europe/Berlin falls back on 2026-10-25 at 03:00 CEST -> 02:00 CET (01:00 UTC).
    schedule = Schedule.parse("30 2 * * *", "Europe/Berlin")
    assert first_slots(schedule, utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first pass only
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]


def test_an_every_hour_schedule_follows_real_time_across_both_changes() -> None:
    schedule = Schedule.parse("0 * * * *", "Europe/Berlin")
    autumn = first_slots(schedule, utc(2026, 10, 24, 23, 30), 4)
    assert autumn == [utc(2026, 10, 25, h) for h in (0, 1, 2, 3)]  # 02:00 twice, 1 h apart
    spring = first_slots(schedule, utc(2026, 3, 28, 23, 30), 3)
    assert spring == [utc(2026, 3, 29, h) for h in (0, 1, 2)]  # no 02:00 local, still hourly


def test_slots_after_the_cached_first_ones_go_on_without_a_gap_or_a_repeat() -> None:
    schedule = Schedule.parse("0 * * * *", "Europe/Berlin")
    after = utc(2026, 10, 24, 22, 30)
    first_slots(schedule, after, 1)  # the first slots are cached now
    assert first_slots(schedule, after, 8) == [
        utc(2026, 10, 24, 23),
        *(utc(2026, 10, 25, h) for h in range(7)),
    ]


@pytest.mark.parametrize(
    ("expression", "time_zone", "message"),
    [
        ("* * * *", "UTC", "has 4 fields"),
        ("61 * * * *", "UTC", "minute: 61 is outside 0-59"),
        ("* 5-2 * * *", "UTC", "runs backwards"),
        ("@fortnightly", "UTC", "unknown macro"),
        ("0 0 31 feb *", "UTC", "never fires"),
        ("*/0 * * * *", "UTC", "step must be at least 1"),
        ("0 0 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_invalid_schedules_say_what_is_wrong(expression: str, time_zone: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        Schedule.parse(expression, time_zone)


def test_nothing_is_due_before_the_first_slot() -> None:
    schedule = Schedule.parse("0 * * * *")
    decision = decide(schedule, utc(2026, 11, 25, 10, 30), None, created=utc(2026, 11, 25, 10, 5))
    assert (decision.slot, decision.skipped, decision.next_slot) == (
        None,
        0,
        utc(2026, 11, 25, 11),
    )


def test_a_due_slot_runs_once() -> None:
    schedule = Schedule.parse("0 * * * *")
    now = utc(2026, 11, 25, 11, 0, 3)
    first = decide(schedule, now, None, created=utc(2026, 11, 25, 10, 5))
    assert first.slot == utc(2026, 11, 25, 11)
    again = decide(schedule, now, last_scheduled=first.slot, created=utc(2026, 11, 25, 10, 5))
    assert again.slot is None


def test_downtime_gives_one_catch_up_run_and_counts_the_rest_as_skipped() -> None:
    schedule = Schedule.parse("*/10 * * * *")
    last = utc(2026, 11, 25, 10, 0)
    decision = decide(schedule, utc(2026, 11, 25, 12, 5), last, created=utc(2026, 11, 1))
    assert decision.slot == utc(2026, 11, 25, 12, 0)
    assert decision.skipped == 11  # 10:10 ... 11:50
    assert decision.last_skipped == utc(2026, 11, 25, 11, 50)


def test_a_slot_older_than_the_starting_deadline_is_skipped() -> None:
    schedule = Schedule.parse("*/10 * * * *")
    last = utc(2026, 11, 25, 10, 0)
    now = utc(2026, 11, 25, 12, 5)
    decision = decide(schedule, now, last, created=last, starting_deadline_seconds=120)
    assert decision.slot is None
    assert (decision.skipped, decision.last_skipped) == (12, utc(2026, 11, 25, 12, 0))
    in_time = decide(schedule, now, last, created=last, starting_deadline_seconds=600)
    assert in_time.slot == utc(2026, 11, 25, 12, 0)


def test_a_long_downtime_on_a_minutely_schedule_is_decided_quickly() -> None:
    schedule = Schedule.parse("* * * * *")
    last = utc(2026, 11, 1)
    decision = decide(schedule, last + timedelta(days=7, seconds=30), last, created=last)
    assert decision.slot == last + timedelta(days=7)
    assert decision.skipped == 7 * 24 * 60 - 1


def brute_force_slots(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """Every minute after `after`, matched against the fields on the zone's wall clock (the
    expressions below restrict at most one of the two day fields)."""
    minutes, hours, days, months, weekdays = (
        _parse_field(part, field)
        for part, field in zip(schedule.fields.split(), _FIELDS, strict=True)
    )
    zone, found = schedule.zone, []
    moment = after.replace(second=0, microsecond=0)
    while len(found) < count:
        moment += timedelta(minutes=1)
        wall = moment.astimezone(zone)
        if (
            wall.minute in minutes
            and wall.hour in hours
            and wall.day in days
            and wall.month in months
            and wall.isoweekday() % 7 in weekdays
        ):
            found.append(moment)
    return found


@pytest.mark.parametrize("time_zone", ["UTC", "Etc/GMT-2", "Etc/GMT+11", "Asia/Kolkata"])
@pytest.mark.parametrize("expression", ["*/1 * * * *", "*/7 3-5 * * 1", "59 23 * * *"])
def test_slots_away_from_clock_changes_are_the_matching_minutes(
    expression: str, time_zone: str
) -> None:
    schedule = Schedule.parse(expression, time_zone)
    after = datetime(2026, 11, 25, 11, 15, 30, tzinfo=UTC)
    slots = schedule.iter_slots(after)
    assert [next(slots) for _ in range(30)] == brute_force_slots(schedule, after, 30)
