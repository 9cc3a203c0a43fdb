"""run_status: a run's outcome, reason and message from its Job and Pods."""

from __future__ import annotations

import json
from typing import Any

from kingest.operator.status import parse_result, redact, run_status


def job(conditions: list[dict[str, Any]] | None = None, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "students-0123456789",
            "annotations": {"kingest.io/trigger": "Generation", "kingest.io/generation": "2"}
            | annotations,
        },
        "status": {"startTime": "2026-01-01T00:00:00Z", "conditions": conditions or []},
    }


def finished(type_: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    condition = {"type": type_, "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"}
    if reason:
        condition |= {"reason": reason, "message": message or ""}
    return job([condition])


def pod(phase: str, state: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "students-0123456789-abcde",
            "creationTimestamp": "2026-01-01T00:00:01Z",
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "runner", "state": state}]}
        | status,
    }


def terminated(exit_code: int, message: str) -> dict[str, Any]:
    return {"terminated": {"exitCode": exit_code, "message": message}}


RESULT_OK = {
    "status": "succeeded",
    "load_id": "1767225600.123",
    "rows": 4,
    "files": 1,
    "bytes": 321,
    "duration_s": 0.5,
    "destination_table": "processed_students.student_details",
}


def test_succeeded_run_reports_the_runner_result() -> None:
    run = run_status(finished("Complete"), [pod("Succeeded", terminated(0, json.dumps(RESULT_OK)))])
    assert run.result == "Succeeded"
    assert (run.load_id, run.rows, run.files, run.bytes) == ("1767225600.123", 4, 1, 321)
    assert run.message == "loaded 4 rows into processed_students.student_details"
    assert run.generation == 2
    assert run.trigger == "Generation"
    assert run.completion_time == "2026-01-01T00:01:00Z"


def test_succeeded_run_reports_the_cursor_as_text() -> None:
    result = RESULT_OK | {
        "cursor": {
            "key": "updated_at",
            "value": "2026-01-01T09:00:00",
            "previous": None,
            "stored": True,
            "rows_skipped": 2,
        }
    }
    run = run_status(finished("Complete"), [pod("Succeeded", terminated(0, json.dumps(result)))])
    assert run.cursor is not None
    assert (run.cursor.key, run.cursor.value, run.cursor.previous) == (
        "updated_at",
        "2026-01-01T09:00:00",
        None,
    )
    assert (run.cursor.stored, run.cursor.rows_skipped) == (True, 2)

    numeric = RESULT_OK | {"cursor": {"key": "id", "value": 109, "previous": 99, "stored": False}}
    run = run_status(finished("Complete"), [pod("Succeeded", terminated(0, json.dumps(numeric)))])
    assert run.cursor is not None
    assert (run.cursor.value, run.cursor.previous, run.cursor.stored) == ("109", "99", False)


def test_a_run_without_a_cursor_reports_none() -> None:
    run = run_status(finished("Complete"), [pod("Succeeded", terminated(0, json.dumps(RESULT_OK)))])
    assert run.cursor is None


def test_failed_run_reports_the_runner_reason_and_error() -> None:
    result = {"status": "failed", "reason": "NoFilesMatched", "error": "no object matches b/*.csv"}
    run = run_status(
        finished("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        [pod("Failed", terminated(3, json.dumps(result)))],
    )
    assert (run.result, run.reason) == ("Failed", "NoFilesMatched")
    assert run.message == "no object matches b/*.csv"


def test_failed_run_without_result_json_reports_the_log_tail() -> None:
    run = run_status(
        finished("Failed", "BackoffLimitExceeded", "backoff"),
        [pod("Failed", terminated(1, "Traceback...\nboom"))],
    )
    assert (run.result, run.reason) == ("Failed", "RunnerFailed")
    assert "exited with code 1" in (run.message or "")
    assert "boom" in (run.message or "")


def test_deadline_exceeded_is_the_reason_even_if_the_runner_said_something() -> None:
    run = run_status(
        finished("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
        [],
    )
    assert (run.result, run.reason) == ("Failed", "DeadlineExceeded")
    assert run.message == "Job was active longer than specified deadline"


def test_waiting_reasons_become_pending_reasons() -> None:
    for reason, message in [
        ("ImagePullBackOff", 'Back-off pulling image "nope"'),
        ("CreateContainerConfigError", "couldn't find key secret_access_key in Secret ns/keys"),
        ("ErrImagePull", "pull access denied"),
    ]:
        waiting = {"waiting": {"reason": reason, "message": message}}
        run = run_status(job(), [pod("Pending", waiting)])
        assert (run.result, run.reason, run.message) == ("Pending", reason, message)


def test_container_creating_is_just_pending() -> None:
    run = run_status(job(), [pod("Pending", {"waiting": {"reason": "ContainerCreating"}})])
    assert (run.result, run.reason) == ("Pending", "PodPending")


def test_unschedulable_pod_says_why() -> None:
    unscheduled = pod(
        "Pending",
        {},
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory.",
            }
        ],
    )
    unscheduled["status"].pop("containerStatuses")
    run = run_status(job(), [unscheduled])
    assert (run.result, run.reason) == ("Pending", "Unschedulable")
    assert "Insufficient memory" in (run.message or "")


def test_running_container_is_running() -> None:
    run = run_status(job(), [pod("Running", {"running": {"startedAt": "2026-01-01T00:00:02Z"}})])
    assert (run.result, run.reason) == ("Running", "Running")


def test_a_failed_attempt_before_the_backoff_limit_is_retrying() -> None:
    result = {"status": "failed", "reason": "AccessDenied", "error": "access denied to bucket b"}
    run = run_status(job(), [pod("Failed", terminated(5, json.dumps(result)))])
    assert (run.result, run.reason) == ("Running", "Retrying")
    assert "AccessDenied" in (run.message or "")


def test_job_without_pods_is_pending() -> None:
    assert run_status(job(), []).reason == "JobCreated"


def test_requested_run_is_labelled_requested() -> None:
    run = run_status(job(**{"kingest.io/run-request": "x", "kingest.io/trigger": "Requested"}), [])
    assert run.trigger == "Requested"


def test_result_json_is_found_after_log_lines() -> None:
    assert parse_result('starting\n{"status": "succeeded", "rows": 1}\n') == {
        "status": "succeeded",
        "rows": 1,
    }
    assert parse_result("no json here") is None
    assert parse_result('{"truncated": ') is None


def test_redact_hides_credentials_in_uris() -> None:
    text = "s3://?access_key_id=AKIA123&secret_access_key=abc/def and postgres://u:pw@h/db"
    redacted = redact(text)
    assert "AKIA123" not in redacted
    assert "abc/def" not in redacted
    assert "pw@" not in redacted
    assert "access_key_id=***" in redacted


def test_times_use_the_api_servers_utc_spelling() -> None:
    complete = finished("Complete")
    complete["status"]["startTime"] = "2026-01-01T00:00:00+00:00"
    complete["status"]["completionTime"] = "2026-01-01T00:02:00+00:00"
    run = run_status(complete, [])
    assert (run.start_time, run.completion_time) == ("2026-01-01T00:00:00Z", "2026-01-01T00:02:00Z")
