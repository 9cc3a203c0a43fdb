"""plan for scheduled Ingestions: which slot runs at a fixed `now`, and what the status says."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kingest.operator.job import Run, RunnerDefaults, job_name, render_job
from kingest.operator.reconcile import RUN_REQUESTED, Plan, plan
from kingest.operator.spec import IngestionMeta, IngestionSpec, IngestionStatus
from kingest.operator.validate import parse_spec, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CREATED = "2026-03-01T10:00:00Z"


def spec(**fields: Any) -> IngestionSpec:
    return IngestionSpec.model_validate(
        {
            "source": {"uri": "s3://", "table": "b/*.csv"},
            "destination": {"uri": "duckdb:///d.duckdb", "table": "s.t"},
            "schedule": "@hourly",
            **fields,
        }
    )


def meta(generation: int = 1, **annotations: str) -> IngestionMeta:
    return IngestionMeta(
        name="hourly",
        namespace="ns",
        uid="uid-1",
        generation=generation,
        creation_timestamp=CREATED,
        annotations=annotations,
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def slot_run(slot: str) -> Run:
    return Run("Schedule", 1, slot=at(slot))


def a_job(run: Run, state: str = "active", created_at: str = "2026-03-01T11:00:01.0Z") -> dict:
    job = render_job(meta(run.generation), spec(), run, RunnerDefaults("img"), created_at)
    job["status"] = {"startTime": created_at[:19] + "Z"}
    if state != "active":
        job["status"]["conditions"] = [
            {"type": state, "status": "True", "lastTransitionTime": created_at[:19] + "Z"}
        ]
    return job


def running_pod(job: dict) -> dict:
    return {
        "metadata": {
            "name": job["metadata"]["name"] + "-x",
            "labels": {"job-name": job["metadata"]["name"]},
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "runner", "state": {"running": {"startedAt": "x"}}}],
        },
    }


def condition(step: Plan, type_: str) -> tuple[str, str]:
    found = next(c for c in step.status.conditions if c.type == type_)
    return found.status, found.reason


def test_a_scheduled_ingestion_does_not_run_on_creation_and_shows_its_next_slot() -> None:
    step = plan(meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec())
    assert step.create is None
    assert step.status.phase == "Scheduled"
    assert step.status.next_run_time == "2026-03-01T11:00:00Z"
    assert step.status.observed_generation == 1


def test_run_on_create_runs_once_at_creation_then_per_slot() -> None:
    step = plan(
        meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec(runOnCreate=True)
    )
    assert step.create == Run("Generation", 1)
    again = plan(
        meta(),
        None,
        step.status,
        [a_job(Run("Generation", 1))],
        [],
        "2026-03-01T10:00:06Z",
        spec(runOnCreate=True),
    )
    assert again.create is None


def test_a_due_slot_runs_under_a_name_derived_from_the_slot() -> None:
    old = plan(meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec()).status
    step = plan(meta(), None, old, [], [], "2026-03-01T11:00:01Z", spec())
    assert step.create == slot_run("2026-03-01T11:00:00Z")
    name = job_name("hourly", "uid-1", step.create)
    assert name.endswith(f"-{int(at('2026-03-01T11:00:00Z').timestamp()) // 60}")
    assert len(job_name("x" * 100, "uid-1", step.create)) <= 63
    assert step.status.last_schedule_time == "2026-03-01T11:00:00Z"
    assert step.status.next_run_time == "2026-03-01T12:00:00Z"
    assert [e.reason for e in step.events] == ["RunCreated"]


def test_a_slot_whose_job_exists_is_adopted_even_if_the_status_was_lost() -> None:
    # An operator that died between creating the Job and writing the status, or a second
    # replica with an older view: the Job itself says the slot ran.
    job = a_job(slot_run("2026-03-01T11:00:00Z"))
    lost = IngestionStatus(observed_generation=1)
    step = plan(meta(), None, lost, [job], [running_pod(job)], "2026-03-01T11:00:02Z", spec())
    assert step.create is None
    assert step.status.last_schedule_time == "2026-03-01T11:00:00Z"
    assert step.status.skipped_slots == 0


def test_forbid_skips_a_slot_while_a_run_is_active_and_records_it() -> None:
    old = plan(meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec()).status
    first = a_job(slot_run("2026-03-01T11:00:00Z"))
    running = plan(meta(), None, old, [first], [running_pod(first)], "2026-03-01T11:00:02Z", spec())
    step = plan(
        meta(), None, running.status, [first], [running_pod(first)], "2026-03-01T12:00:01Z", spec()
    )
    assert step.create is None and step.delete == ()
    assert step.status.skipped_slots == 1
    assert step.status.last_skipped_time == "2026-03-01T12:00:00Z"
    assert condition(step, "ConcurrencyForbidden") == ("True", "RunActive")
    assert "SlotSkipped" in [e.reason for e in step.events]
    again = plan(
        meta(), None, step.status, [first], [running_pod(first)], "2026-03-01T12:00:30Z", spec()
    )
    assert again.status.skipped_slots == 1 and again.create is None


def test_allow_starts_a_slot_alongside_an_active_run() -> None:
    first = a_job(slot_run("2026-03-01T11:00:00Z"))
    old = IngestionStatus(observed_generation=1, scheduled_from="2026-03-01T11:00:00Z")
    step = plan(
        meta(),
        None,
        old,
        [first],
        [running_pod(first)],
        "2026-03-01T12:00:01Z",
        spec(concurrencyPolicy="Allow"),
    )
    assert step.create == slot_run("2026-03-01T12:00:00Z")
    assert step.delete == ()


def test_replace_deletes_the_active_run_then_starts_the_slot() -> None:
    first = a_job(slot_run("2026-03-01T11:00:00Z"))
    old = IngestionStatus(observed_generation=1, scheduled_from="2026-03-01T11:00:00Z")
    policy = spec(concurrencyPolicy="Replace")
    step = plan(meta(), None, old, [first], [running_pod(first)], "2026-03-01T12:00:01Z", policy)
    assert step.create is None
    assert step.delete == (first["metadata"]["name"],)
    assert step.status.scheduled_from == "2026-03-01T11:00:00Z"  # the slot stays due
    first["metadata"]["deletionTimestamp"] = "2026-03-01T12:00:02Z"
    deleting = plan(meta(), None, step.status, [first], [], "2026-03-01T12:00:02Z", policy)
    assert deleting.create is None and deleting.delete == ()
    gone = plan(meta(), None, deleting.status, [], [], "2026-03-01T12:00:04Z", policy)
    assert gone.create == slot_run("2026-03-01T12:00:00Z")


def test_suspend_fires_nothing_and_resume_runs_at_most_the_latest_missed_slot() -> None:
    old = plan(meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec()).status
    suspended = plan(meta(2), None, old, [], [], "2026-03-01T10:30:00Z", spec(suspend=True))
    assert suspended.status.phase == "Suspended"
    assert condition(suspended, "Suspended") == ("True", "Suspended")
    assert suspended.status.next_run_time is None
    later = plan(
        meta(2), None, suspended.status, [], [], "2026-03-01T13:30:00Z", spec(suspend=True)
    )
    assert later.create is None
    resumed = plan(meta(3), None, later.status, [], [], "2026-03-01T13:30:01Z", spec())
    assert resumed.create == Run("Schedule", 3, slot=at("2026-03-01T13:00:00Z"))
    assert resumed.status.skipped_slots == 2  # 11:00 and 12:00
    assert condition(resumed, "Suspended") == ("False", "NotSuspended")


def test_resume_past_the_starting_deadline_runs_nothing_until_the_next_slot() -> None:
    old = plan(meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec()).status
    suspended = plan(meta(2), None, old, [], [], "2026-03-01T10:30:00Z", spec(suspend=True))
    resumed = plan(
        meta(3),
        None,
        suspended.status,
        [],
        [],
        "2026-03-01T13:30:00Z",
        spec(startingDeadlineSeconds=60),
    )
    assert resumed.create is None
    assert resumed.status.skipped_slots == 3
    assert resumed.status.next_run_time == "2026-03-01T14:00:00Z"


def test_after_downtime_one_catch_up_run_within_the_deadline() -> None:
    old = plan(meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec()).status
    deadline = spec(startingDeadlineSeconds=300)
    step = plan(meta(), None, old, [], [], "2026-03-01T14:03:00Z", deadline)
    assert step.create == slot_run("2026-03-01T14:00:00Z")
    assert step.status.skipped_slots == 3
    late = plan(meta(), None, old, [], [], "2026-03-01T14:06:00Z", deadline)
    assert late.create is None
    assert late.status.skipped_slots == 4
    assert late.status.last_skipped_time == "2026-03-01T14:00:00Z"
    assert (
        plan(
            meta(), None, late.status, [], [], "2026-03-01T14:07:00Z", deadline
        ).status.skipped_slots
        == 4
    )


def test_an_invalid_schedule_sets_a_condition_and_recovers_when_fixed() -> None:
    broken = plan(
        meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec(schedule="61 * * * *")
    )
    assert broken.create is None
    assert broken.status.phase == "Invalid" and broken.status.reason == "InvalidSchedule"
    assert "minute: 61 is outside 0-59" in broken.status.message
    assert condition(broken, "InvalidSchedule") == ("True", "InvalidSchedule")
    zone = plan(
        meta(2), None, broken.status, [], [], "2026-03-01T10:00:06Z", spec(timeZone="Mars/Base")
    )
    assert condition(zone, "InvalidSchedule") == ("True", "InvalidSchedule")
    assert "Mars/Base" in zone.status.message
    fixed = plan(meta(3), None, zone.status, [], [], "2026-03-01T10:00:07Z", spec())
    assert fixed.status.phase == "Scheduled"
    assert condition(fixed, "InvalidSchedule") == ("False", "ValidSchedule")
    assert fixed.status.next_run_time == "2026-03-01T11:00:00Z"


def test_editing_the_schedule_moves_the_next_slot_without_firing_old_ones() -> None:
    old = plan(meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec()).status
    edited = plan(meta(2), None, old, [], [], "2026-03-01T10:31:00Z", spec(schedule="*/10 * * * *"))
    assert edited.create is None
    assert edited.status.next_run_time == "2026-03-01T10:40:00Z"
    assert edited.status.skipped_slots == 0
    zoned = plan(
        meta(3),
        None,
        edited.status,
        [],
        [],
        "2026-03-01T10:32:00Z",
        spec(schedule="0 12 * * *", timeZone="Europe/Berlin"),
    )
    assert zoned.status.next_run_time == "2026-03-01T11:00:00Z"


def test_a_run_request_still_runs_a_scheduled_ingestion_once() -> None:
    old = plan(meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec()).status
    step = plan(
        meta(1, **{RUN_REQUESTED: "now"}), None, old, [], [], "2026-03-01T10:10:00Z", spec()
    )
    assert step.create == Run("Requested", 1, "now")


def test_history_limits_delete_the_oldest_finished_jobs() -> None:
    slots = [f"2026-03-01T{hour:02d}:00:00Z" for hour in range(11, 17)]
    jobs = [
        a_job(slot_run(slot), "Complete" if i % 2 else "Failed", created_at=slot[:19] + ".0Z")
        for i, slot in enumerate(slots)
    ]
    old = IngestionStatus(observed_generation=1, scheduled_from=slots[-1])
    step = plan(
        meta(), None, old, jobs, [], "2026-03-01T16:30:00Z", spec(successfulRunsHistoryLimit=2)
    )
    names = {slot: job["metadata"]["name"] for slot, job in zip(slots, jobs, strict=True)}
    # Complete: 12, 14, 16 -> keep 16, 14; Failed: 11, 13, 15 -> keep 15 (default 1).
    assert set(step.prune) == {names[slots[1]], names[slots[0]], names[slots[2]]}
    assert step.delete == ()


def test_planning_a_scheduled_ingestion_twice_is_idempotent() -> None:
    old = plan(meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", spec()).status
    step = plan(meta(), None, old, [], [], "2026-03-01T11:00:01Z", spec())
    job = a_job(step.create)
    again = plan(meta(), None, step.status, [job], [], "2026-03-01T11:00:02Z", spec())
    assert again.create is None and again.delete == () and again.prune == ()
    assert again.status.model_dump(
        exclude={"conditions", "runs", "last_run"}
    ) == step.status.model_dump(exclude={"conditions", "runs", "last_run"})


def test_the_scheduled_example_passes_validation_and_runs_hourly() -> None:
    docs = yaml.safe_load_all((EXAMPLES / "scheduled-s3-to-duckdb.yaml").read_text())
    raw = next(d for d in docs if d["kind"] == "Ingestion")["spec"]
    example = parse_spec(raw)
    validate(example)
    step = plan(meta(), None, IngestionStatus(), [], [], "2026-03-01T10:00:05Z", example)
    assert step.status.phase == "Scheduled"
    assert step.status.next_run_time == "2026-03-01T11:00:00Z"
    assert example.incremental_strategy == "append"
