"""plan's failure rules: a deleted Job ends its run, Running means a running container, and
transient failures are retried with backoff up to spec.retry's limit (pure, no cluster)."""

from __future__ import annotations

import json

from kingest.operator.job import Run, job_name
from kingest.operator.reconcile import plan
from kingest.operator.spec import IngestionSpec, IngestionStatus
from tests.operator.test_reconcile import SPEC, a_job, a_pod, meta, succeeded_pod

NOW = "2026-01-01T00:00:10Z"
FAILED_AT = "2026-01-01T00:00:05Z"  # when `a_job(..., "Failed")` failed


def _condition(status: IngestionStatus, type_: str) -> tuple[str, str]:
    found = next(c for c in status.conditions if c.type == type_)
    return found.status, found.reason


def _failed_pod(job: dict, reason: str, exit_code: int) -> dict:
    result = {"status": "failed", "reason": reason, "error": f"{reason}: endpoint unreachable"}
    terminated = {"terminated": {"exitCode": exit_code, "message": json.dumps(result)}}
    return a_pod(job, "Failed", terminated)


def _retrying(limit: int = 3, backoff: int = 10) -> IngestionSpec:
    return SPEC.model_copy(
        update={"retry": SPEC.retry.model_copy(update={"limit": limit, "backoff_seconds": backoff})}
    )


def test_a_running_job_deleted_ends_the_run_failed_job_deleted() -> None:
    job = a_job(Run("Generation", 1))
    running = a_pod(job, "Running", {"running": {}})
    old = plan(meta(), None, IngestionStatus(), [job], [running], NOW, SPEC).status
    step = plan(meta(), None, old, [], [], "2026-01-01T00:00:20Z", SPEC)
    assert step.create is None
    assert (step.status.phase, step.status.reason) == ("Failed", "JobDeleted")
    assert "was Running" in (step.status.message or "")
    assert step.status.last_run.completion_time == "2026-01-01T00:00:20Z"
    assert _condition(step.status, "Ready") == ("False", "JobDeleted")
    assert _condition(step.status, "Running") == ("False", "NoActiveRun")
    assert [(e.type, e.reason) for e in step.events] == [("Warning", "JobDeleted")]
    # Said once: the next reconcile keeps the outcome and posts nothing.
    again = plan(meta(), None, step.status, [], [], "2026-01-01T00:00:30Z", SPEC)
    assert again.status.reason == "JobDeleted" and again.events == ()


def test_a_job_deleted_before_its_pod_started_ends_the_run_too() -> None:
    old = plan(meta(), None, IngestionStatus(), [], [], NOW, SPEC).status
    assert old.phase == "Pending"
    step = plan(meta(), None, old, [], [], NOW, SPEC)
    assert (step.status.phase, step.status.reason) == ("Failed", "JobDeleted")
    assert step.create is None  # the generation was handled: deleting the Job is no new run


def test_a_deleted_run_stays_the_latest_before_older_finished_runs() -> None:
    done = a_job(Run("Generation", 1), "Complete")
    pods = [succeeded_pod(done)]
    first = plan(meta(), None, IngestionStatus(), [done], pods, NOW, SPEC).status
    later = a_job(Run("Generation", 2), created_at="2026-01-01T00:00:09.1Z")
    old = plan(meta(2), None, first, [done, later], pods, NOW, SPEC).status
    step = plan(meta(2), None, old, [done], pods, NOW, SPEC)
    assert [r.job for r in step.status.runs] == [
        later["metadata"]["name"],
        done["metadata"]["name"],
    ]
    assert step.status.reason == "JobDeleted"


def test_running_is_false_while_the_pod_waits_on_a_secret() -> None:
    job = a_job(Run("Generation", 1))
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": "no key"}}
    stuck = a_pod(job, "Pending", waiting)
    status = plan(meta(), None, IngestionStatus(), [job], [stuck], NOW, SPEC).status
    assert status.phase == "Pending"
    assert _condition(status, "Running") == ("False", "CreateContainerConfigError")
    started = a_pod(job, "Running", {"running": {}})
    status = plan(meta(), None, status, [job], [started], NOW, SPEC).status
    assert _condition(status, "Running") == ("True", "Running")


def test_a_transient_failure_waits_its_backoff_then_runs_attempt_two() -> None:
    spec = _retrying(backoff=10)
    job = a_job(Run("Generation", 1), "Failed")
    pods = [_failed_pod(job, "SourceUnavailable", 8)]
    waiting = plan(meta(), None, IngestionStatus(), [job], pods, NOW, spec)
    assert waiting.create is None
    assert (waiting.status.phase, waiting.status.reason) == ("Pending", "RetryScheduled")
    assert waiting.status.next_retry_time == "2026-01-01T00:00:15Z"  # failed at :05, + 10 s
    assert "SourceUnavailable" in (waiting.status.message or "")
    assert [(e.type, e.reason) for e in waiting.events] == [("Warning", "SourceUnavailable")]
    assert _condition(waiting.status, "Running") == ("False", "RetryScheduled")

    due = plan(meta(), None, waiting.status, [job], pods, "2026-01-01T00:00:15Z", spec)
    assert due.create == Run("Generation", 1, attempt=2)
    assert due.status.last_run.attempt == 2
    assert due.status.next_retry_time is None
    assert [e.reason for e in due.events] == ["RunRetried"]
    assert "attempt 2 of 4" in due.events[0].message
    assert [r.job for r in due.status.runs][1] == job["metadata"]["name"]  # each attempt kept


def test_the_backoff_doubles_and_the_limit_ends_the_retries() -> None:
    spec = _retrying(limit=2, backoff=10)
    second = a_job(Run("Generation", 1, attempt=2), "Failed")
    pods = [_failed_pod(second, "SourceUnavailable", 8)]
    handled = IngestionStatus(observed_generation=1)  # attempt 1's Job is gone (history)
    step = plan(meta(), None, handled, [second], pods, NOW, spec)
    assert step.status.next_retry_time == "2026-01-01T00:00:25Z"  # 20 s after attempt 2
    third = a_job(Run("Generation", 1, attempt=3), "Failed")
    pods = [_failed_pod(third, "SourceUnavailable", 8)]
    final = plan(meta(), None, handled, [third], pods, "2026-01-01T01:00:00Z", spec)
    assert final.create is None and final.status.next_retry_time is None
    assert (final.status.phase, final.status.reason) == ("Failed", "SourceUnavailable")


def test_data_and_usage_errors_are_never_retried() -> None:
    for reason, code in (("DataError", 6), ("NoFilesMatched", 3), ("InvalidUri", 2)):
        job = a_job(Run("Generation", 1), "Failed")
        pods = [_failed_pod(job, reason, code)]
        step = plan(
            meta(), None, IngestionStatus(), [job], pods, "2026-01-02T00:00:00Z", _retrying()
        )
        assert step.create is None, reason
        assert (step.status.phase, step.status.reason) == ("Failed", reason)


def test_retry_limit_zero_means_one_attempt() -> None:
    job = a_job(Run("Generation", 1), "Failed")
    pods = [_failed_pod(job, "SourceUnavailable", 8)]
    step = plan(meta(), None, IngestionStatus(), [job], pods, "2026-01-02T00:00:00Z", _retrying(0))
    assert step.create is None and step.status.phase == "Failed"


def test_exit_code_8_without_a_result_is_source_unavailable() -> None:
    job = a_job(Run("Generation", 1), "Failed")
    crashed = a_pod(job, "Failed", {"terminated": {"exitCode": 8, "message": "a log tail"}})
    step = plan(meta(), None, IngestionStatus(), [job], [crashed], NOW, _retrying())
    assert step.status.last_run.reason == "SourceUnavailable"
    assert step.status.reason == "RetryScheduled"


def test_a_new_generation_wins_over_a_pending_retry() -> None:
    job = a_job(Run("Generation", 1), "Failed")
    pods = [_failed_pod(job, "SourceUnavailable", 8)]
    old = plan(meta(), None, IngestionStatus(), [job], pods, NOW, _retrying()).status
    step = plan(meta(2), None, old, [job], pods, NOW, _retrying())
    assert step.create == Run("Generation", 2)
    assert step.status.next_retry_time is None


def test_attempts_have_their_own_job_names() -> None:
    names = {job_name("students", "uid-1", Run("Generation", 1, attempt=n)) for n in (1, 2, 3)}
    assert len(names) == 3
    assert job_name("students", "uid-1", Run("Generation", 1)) == job_name(
        "students", "uid-1", Run("Generation", 1, attempt=1)
    )
