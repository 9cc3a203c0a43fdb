"""plan's steps one by one: each is one rule of operator/README.md (pure, no cluster)."""

from __future__ import annotations

from kingest.operator.job import Run
from kingest.operator.reconcile import (
    RUN_REQUESTED,
    due_run,
    run_conditions,
    schedule_of,
    standing_verdict,
    start_run,
    summary,
)
from kingest.operator.spec import IngestionStatus, RunStatus
from tests.operator.test_reconcile import NOW, SPEC, a_job, a_pod, meta

SCHEDULED = SPEC.model_copy(update={"schedule": "@hourly"})


def test_schedule_of_parses_or_says_why_not() -> None:
    schedule, error = schedule_of(SCHEDULED, None)
    assert schedule is not None and error is None
    schedule, error = schedule_of(SPEC.model_copy(update={"schedule": "61 * * * *"}), None)
    assert schedule is None and "61 * * * *" in (error or "")
    assert schedule_of(SPEC, None) == (None, None)
    assert schedule_of(SCHEDULED, "already invalid") == (None, None)


def test_a_verdict_holds_for_its_generation_only() -> None:
    old = IngestionStatus(
        phase="Invalid", reason="InvalidSpec", message="bad", observed_generation=1
    )
    assert standing_verdict(meta(1), old) == "bad"
    assert standing_verdict(meta(2), old) is None
    schedule = old.model_copy(update={"reason": "InvalidSchedule"})
    assert standing_verdict(meta(1), schedule) is None  # checked again every time


def test_due_run_per_generation_and_per_request_value() -> None:
    assert due_run(meta(1), IngestionStatus(), SPEC, None, False).run == Run("Generation", 1)
    seen = IngestionStatus(observed_generation=1, handled_run_request="a")
    assert due_run(meta(1), seen, SPEC, None, False).run is None
    asked = meta(1, **{RUN_REQUESTED: "b"})
    assert due_run(asked, seen, SPEC, None, False).run == Run("Requested", 1, "b")
    # Scheduled: a generation only moves the next slot (it is observed, nothing runs).
    scheduled = due_run(meta(2), seen, SCHEDULED, None, True)
    assert scheduled.run is None and scheduled.observed == 2
    # Invalid: acted on, never run.
    invalid = due_run(asked, IngestionStatus(), SPEC, "bad", False)
    assert (invalid.run, invalid.observed, invalid.handled) == (None, 1, "b")


def test_start_run_adopts_creates_waits_or_supersedes() -> None:
    run = Run("Generation", 2)
    mine = a_job(run)
    assert start_run(meta(2), run, [mine], [], [mine]).started  # adopted, nothing created
    created = start_run(meta(2), run, [], [], [])
    assert created.create == run and [e.reason for e in created.events] == ["RunCreated"]
    other = a_job(Run("Generation", 1))
    started = a_pod(other, "Running", {"running": {}})
    waiting = start_run(meta(2), run, [other], [started], [other])
    assert (
        waiting.create is None and waiting.delete == () and "waits for" in (waiting.waiting or "")
    )
    stuck = a_pod(other, "Pending", {"waiting": {"reason": "ImagePullBackOff"}})
    superseding = start_run(meta(2), run, [other], [stuck], [other])
    assert superseding.delete == (other["metadata"]["name"],) and not superseding.started


def _run(result: str, reason: str) -> RunStatus:
    return RunStatus(job="j", trigger="Generation", result=result, reason=reason, message="m")


def test_summary_says_the_most_telling_fact() -> None:
    args = (None, None, False)
    assert summary("bad", None, False, None, None, False, None, None)[:2] == (
        "Invalid",
        "InvalidSpec",
    )
    assert summary("c", "c", False, None, None, True, None, None)[1] == "InvalidSchedule"
    assert summary(None, None, True, None, None, True, None, None)[0] == "Suspended"
    assert summary(*args, None, "T", True, None, None) == (
        "Scheduled",
        "Scheduled",
        "next run at T",
    )
    failed = _run("Failed", "SourceUnavailable")
    assert summary(*args, failed, None, False, None, "T")[:2] == ("Pending", "RetryScheduled")
    assert summary(*args, failed, None, False, None, None)[:2] == ("Failed", "SourceUnavailable")


def test_running_is_true_only_for_a_running_container() -> None:
    def running(run: RunStatus) -> tuple[str, str]:
        conditions = run_conditions(IngestionStatus(), "Running", "r", "m", [run], None, 1, NOW)
        found = next(c for c in conditions if c.type == "Running")
        return found.status, found.reason

    assert running(_run("Running", "Running")) == ("True", "Running")
    assert running(_run("Pending", "CreateContainerConfigError")) == (
        "False",
        "CreateContainerConfigError",
    )
    assert running(_run("Running", "Retrying")) == ("False", "Retrying")
    assert running(_run("Succeeded", "Succeeded")) == ("False", "NoActiveRun")
