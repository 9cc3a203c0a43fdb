"""plan: which run is due, when its Job may be created, and the resulting status."""

from __future__ import annotations

import json
from typing import Any

from kingest.operator.job import Run, RunnerDefaults, job_name, render_job
from kingest.operator.reconcile import RUN_REQUESTED, plan
from kingest.operator.spec import IngestionMeta, IngestionSpec, IngestionStatus

NOW = "2026-01-01T00:00:10Z"
SPEC = IngestionSpec.model_validate(
    {
        "source": {"uri": "s3://", "table": "b/*.csv"},
        "destination": {"uri": "duckdb:///d.duckdb", "table": "s.t"},
    }
)


def meta(generation: int = 1, **annotations: str) -> IngestionMeta:
    return IngestionMeta(
        name="students", namespace="ns", uid="uid-1", generation=generation, annotations=annotations
    )


def a_job(run: Run, state: str = "active", created_at: str = "2026-01-01T00:00:00.1Z") -> dict:
    """A Job as the API returns it; `state` is active, Complete or Failed."""
    job = render_job(meta(run.generation), SPEC, run, RunnerDefaults("img"), created_at)
    job["status"] = {"startTime": "2026-01-01T00:00:00Z"}
    if state != "active":
        job["status"]["conditions"] = [
            {"type": state, "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}
        ]
    return job


def a_pod(job: dict, phase: str, state: dict[str, Any]) -> dict:
    return {
        "metadata": {
            "name": job["metadata"]["name"] + "-x",
            "labels": {"job-name": job["metadata"]["name"]},
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "runner", "state": state}]},
    }


def succeeded_pod(job: dict, load_id: str = "1.5") -> dict:
    result = {"status": "succeeded", "load_id": load_id, "rows": 4, "files": 1, "bytes": 9}
    return a_pod(job, "Succeeded", {"terminated": {"exitCode": 0, "message": json.dumps(result)}})


def test_a_new_ingestion_gets_its_first_run() -> None:
    step = plan(meta(), None, IngestionStatus(), [], [], NOW)
    assert step.create == Run("Generation", 1)
    assert step.status.phase == "Pending"
    assert step.status.observed_generation == 1
    assert step.status.last_run.job == job_name("students", "uid-1", Run("Generation", 1))
    assert [e.reason for e in step.events] == ["RunCreated"]


def test_an_existing_job_for_the_due_run_is_adopted_not_duplicated() -> None:
    job = a_job(Run("Generation", 1))
    step = plan(meta(), None, IngestionStatus(), [job], [], NOW)
    assert step.create is None
    assert step.status.observed_generation == 1
    assert step.status.last_run.job == job["metadata"]["name"]


def test_a_new_generation_waits_for_a_started_run() -> None:
    old_job = a_job(Run("Generation", 1))
    running = a_pod(old_job, "Running", {"running": {}})
    old = plan(meta(), None, IngestionStatus(), [old_job], [running], NOW).status
    step = plan(meta(2), None, old, [old_job], [running], NOW)
    assert step.create is None and step.delete == ()
    assert step.status.observed_generation == 1
    assert step.status.phase == "Running"
    assert "spec generation 2 waits for" in (step.status.message or "")


def test_a_new_generation_supersedes_a_run_that_never_started() -> None:
    old_job = a_job(Run("Generation", 1))
    stuck = a_pod(
        old_job,
        "Pending",
        {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "k" not found'}},
    )
    old = plan(meta(), None, IngestionStatus(), [old_job], [stuck], NOW).status
    step = plan(meta(2), None, old, [old_job], [stuck], NOW)
    assert step.delete == (old_job["metadata"]["name"],)
    assert step.create is None
    old_job["metadata"]["deletionTimestamp"] = NOW
    again = plan(meta(2), None, step.status, [old_job], [stuck], NOW)
    assert again.delete == () and again.create is None
    after = plan(meta(2), None, again.status, [], [], NOW)
    assert after.create == Run("Generation", 2)


def test_a_new_generation_runs_once_the_previous_run_finished() -> None:
    done = a_job(Run("Generation", 1), "Complete")
    old = plan(meta(), None, IngestionStatus(), [done], [succeeded_pod(done)], NOW).status
    step = plan(meta(2), None, old, [done], [succeeded_pod(done)], NOW)
    assert step.create == Run("Generation", 2)
    assert step.status.last_load_id == "1.5"


def test_a_run_request_runs_once_per_annotation_value() -> None:
    done = a_job(Run("Generation", 1), "Complete")
    pods = [succeeded_pod(done)]
    old = plan(meta(), None, IngestionStatus(), [done], pods, NOW).status
    step = plan(meta(1, **{RUN_REQUESTED: "again"}), None, old, [done], pods, NOW)
    assert step.create == Run("Requested", 1, "again")
    assert step.status.handled_run_request == "again"
    requested = a_job(Run("Requested", 1, "again"), "Complete", "2026-01-01T00:00:09.1Z")
    pods.append(succeeded_pod(requested, "2.5"))
    repeat = plan(
        meta(1, **{RUN_REQUESTED: "again"}), None, step.status, [done, requested], pods, NOW
    )
    assert repeat.create is None
    assert repeat.status.last_run.job == requested["metadata"]["name"]
    assert repeat.status.last_load_id == "2.5"


def test_a_run_with_nothing_new_to_load_keeps_the_last_load_id_and_reports_skipped_files() -> None:
    done = a_job(Run("Generation", 1), "Complete")
    pods = [succeeded_pod(done)]
    old = plan(meta(), None, IngestionStatus(), [done], pods, NOW).status
    requested = a_job(Run("Requested", 1, "again"), "Complete", "2026-01-01T00:00:09.1Z")
    nothing = {"status": "succeeded", "load_id": None, "rows": 0, "files": 0, "files_skipped": 3}
    terminated = {"terminated": {"exitCode": 0, "message": json.dumps(nothing)}}
    pods.append(a_pod(requested, "Succeeded", terminated))
    step = plan(meta(1, **{RUN_REQUESTED: "again"}), None, old, [done, requested], pods, NOW)
    assert step.status.last_run.job == requested["metadata"]["name"]
    assert (step.status.last_run.rows, step.status.last_run.files_skipped) == (0, 3)
    assert step.status.last_load_id == "1.5"


def cursor_pod(job: dict, value: int, stored: bool = True) -> dict:
    cursor = {"key": "id", "value": value, "previous": None, "stored": stored}
    result = {"status": "succeeded", "load_id": f"{value}.5", "rows": 1, "cursor": cursor}
    return a_pod(job, "Succeeded", {"terminated": {"exitCode": 0, "message": json.dumps(result)}})


def test_the_status_keeps_the_cursor_the_latest_run_stored() -> None:
    """A backfill (stored false) shows its own cursor in its run but leaves status.cursor."""
    first = a_job(Run("Generation", 1), "Complete")
    pods = [cursor_pod(first, 99)]
    old = plan(meta(), None, IngestionStatus(), [first], pods, NOW).status
    assert old.cursor is not None and (old.cursor.key, old.cursor.value) == ("id", "99")

    backfill = a_job(Run("Requested", 1, "b"), "Complete", "2026-01-01T00:00:09.1Z")
    pods.append(cursor_pod(backfill, 20, stored=False))
    step = plan(meta(1, **{RUN_REQUESTED: "b"}), None, old, [first, backfill], pods, NOW)
    assert step.status.last_run.cursor is not None and step.status.last_run.cursor.value == "20"
    assert step.status.cursor == old.cursor

    # Out of the runs' history, the last stored cursor stays.
    later = plan(meta(1, **{RUN_REQUESTED: "b"}), None, step.status, [], [], NOW)
    assert later.status.cursor == old.cursor


def test_an_invalid_spec_runs_nothing_and_the_fixed_spec_runs() -> None:
    step = plan(
        meta(), "spec.source.uri: unknown parameter 'regoin'", IngestionStatus(), [], [], NOW
    )
    assert step.create is None
    assert step.status.phase == "Invalid"
    assert "regoin" in (step.status.message or "")
    assert [e.reason for e in step.events] == ["InvalidSpec"]
    assert plan(meta(), "same", step.status, [], [], NOW).create is None
    fixed = plan(meta(2), None, step.status, [], [], NOW)
    assert fixed.create == Run("Generation", 2)


def test_succeeded_run_sets_conditions_and_load_id() -> None:
    done = a_job(Run("Generation", 1), "Complete")
    status = plan(meta(), None, IngestionStatus(), [done], [succeeded_pod(done)], NOW).status
    conditions = {c.type: c for c in status.conditions}
    assert conditions["Ready"].status == "True"
    assert conditions["Running"].status == "False"
    assert conditions["Succeeded"].status == "True"
    assert conditions["Ready"].observed_generation == 1
    assert status.phase == "Succeeded"
    assert status.last_load_id == "1.5"
    assert status.last_successful_time == "2026-01-01T00:00:05Z"


def test_planning_twice_is_idempotent() -> None:
    done = a_job(Run("Generation", 1), "Complete")
    pods = [succeeded_pod(done)]
    first = plan(meta(), None, IngestionStatus(), [done], pods, NOW)
    second = plan(meta(), None, first.status, [done], pods, "2026-01-01T09:00:00Z")
    assert second.create is None and second.delete == () and second.events == ()
    assert second.status == first.status


def test_a_deleted_finished_job_keeps_its_outcome_in_status() -> None:
    done = a_job(Run("Generation", 1), "Complete")
    status = plan(meta(), None, IngestionStatus(), [done], [succeeded_pod(done)], NOW).status
    after_ttl = plan(meta(), None, status, [], [], NOW)
    assert after_ttl.create is None
    assert after_ttl.status.last_run == status.last_run
    assert after_ttl.status.phase == "Succeeded"


def test_failed_run_posts_a_warning_with_the_runner_reason() -> None:
    failed = a_job(Run("Generation", 1), "Failed")
    result = {"status": "failed", "reason": "BucketNotFound", "error": "bucket 'b' does not exist"}
    pod = a_pod(failed, "Failed", {"terminated": {"exitCode": 4, "message": json.dumps(result)}})
    step = plan(meta(), None, IngestionStatus(), [failed], [pod], NOW)
    assert step.status.phase == "Failed"
    assert step.status.reason == "BucketNotFound"
    assert [(e.type, e.reason) for e in step.events] == [("Warning", "BucketNotFound")]


def test_history_is_bounded_and_newest_first() -> None:
    jobs = [
        a_job(Run("Generation", g), "Complete", f"2026-01-01T00:00:{g:02d}.0Z")
        for g in range(1, 15)
    ]
    status = plan(meta(14), None, IngestionStatus(), jobs, [], NOW).status
    assert len(status.runs) == 10
    assert [r.generation for r in status.runs][:3] == [14, 13, 12]


def test_an_invalid_verdict_holds_until_the_spec_changes() -> None:
    rejected = plan(
        meta(), "the runner Job was rejected: bad volume", IngestionStatus(), [], [], NOW
    )
    again = plan(meta(), None, rejected.status, [], [], NOW)
    assert again.status.phase == "Invalid" and again.create is None
    assert again.status.message == "the runner Job was rejected: bad volume"
    assert plan(meta(2), None, again.status, [], [], NOW).create == Run("Generation", 2)
