"""What a run's Job and Pods say about it (pure).

Status is level-based: `run_status` derives a run's outcome from the Job and its Pods as they
are now, every time either changes, so a Pod stuck before its container starts (an image that
cannot be pulled, a missing Secret key) shows up as a reason and a message instead of a run
that silently never ends. The runner's own result JSON, read from the container's termination
message, supplies the load id, row counts and the user-facing error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kingest.operator.job import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_GENERATION,
    ANNOTATION_RUN_REQUEST,
    ANNOTATION_TRIGGER,
)
from kingest.operator.spec import CursorStatus, RunStatus
from kingest.runner.errors import EXIT_CODES

MAX_MESSAGE = 1024
# Kubelet waiting reasons that are normal steps of starting a container, not problems.
_STARTING = {"ContainerCreating", "PodInitializing"}
_SECRET_PARAMETER = re.compile(
    r"((?:secret_access_key|access_key_id|session_token|password|token|secret)=)[^&\s'\"]+",
    re.IGNORECASE,
)
# The runner's exit codes that name one reason each (2 is shared by two usage reasons).
_REASON_OF_EXIT_CODE = {
    code: reason
    for reason, code in EXIT_CODES.items()
    if list(EXIT_CODES.values()).count(code) == 1
}
_URI_USERINFO = re.compile(r"(://[^:/?#@\s]*:)[^@/\s]+@")


def redact(text: str) -> str:
    """`text` with credential-looking URI parameters and URI passwords replaced by ***.

    The runner redacts its own messages; this is a second line of defence for text that did
    not come from it (a log tail, a Kubernetes message quoting a command line).
    """
    text = _SECRET_PARAMETER.sub(r"\1***", text)
    return _URI_USERINFO.sub(r"\1***@", text)


def _time(value: str | None) -> str | None:
    """An RFC 3339 UTC time in the API server's own spelling (`...Z`, not `+00:00`)."""
    return value[: -len("+00:00")] + "Z" if value and value.endswith("+00:00") else value


def _clip(text: str) -> str:
    text = redact(text.strip())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def job_finished(job: dict[str, Any]) -> str | None:
    """`Complete` or `Failed` when the Job has finished, else None."""
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition["type"]
    return None


def _condition(job: dict[str, Any], type_: str) -> dict[str, Any]:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") == type_:
            return condition
    return {}


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def _newest(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        pods,
        key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]),
        reverse=True,
    )


def parse_result(message: str | None) -> dict[str, Any] | None:
    """The runner's result object from a termination message, or None if it holds none.

    The runner prints the result as its last line, so with FallbackToLogsOnError the message
    may be a log tail ending in the JSON object.
    """
    if not message:
        return None
    for line in reversed(message.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    return _container_status(pod).get("state", {}).get("terminated") or {}


def has_started(pods: list[dict[str, Any]]) -> bool:
    """Whether any Pod of the run has started its container (so it may have written data)."""
    for pod in pods:
        state = _container_status(pod).get("state", {})
        if "running" in state or "terminated" in state:
            return True
        if pod.get("status", {}).get("phase") in ("Running", "Succeeded", "Failed"):
            return True
    return False


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _result_fields(result: dict[str, Any] | None) -> dict[str, Any]:
    if not result:
        return {}
    duration = result.get("duration_s")
    return {
        "load_id": result.get("load_id") or None,
        "rows": _int(result.get("rows")),
        "files": _int(result.get("files")),
        "files_skipped": _int(result.get("files_skipped")),
        "bytes": _int(result.get("bytes")),
        "duration_s": float(duration) if isinstance(duration, int | float) else None,
        "cursor": _cursor(result.get("cursor")),
    }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _cursor(cursor: Any) -> CursorStatus | None:
    """The result's cursor object (its values are numbers, text or timestamps) as status text."""
    if not isinstance(cursor, dict) or not isinstance(cursor.get("key"), str):
        return None
    stored = cursor.get("stored")
    return CursorStatus(
        key=cursor["key"],
        value=_text(cursor.get("value")),
        previous=_text(cursor.get("previous")),
        stored=stored if isinstance(stored, bool) else None,
        rows_skipped=_int(cursor.get("rows_skipped")),
    )


def _failure(pod: dict[str, Any]) -> tuple[str | None, str | None]:
    """The reason and message of a Pod whose container failed."""
    terminated = _terminated(pod)
    result = parse_result(terminated.get("message"))
    if result and result.get("status") == "failed":
        return result.get("reason") or "RunnerFailed", _clip(str(result.get("error") or ""))
    exit_code = terminated.get("exitCode")
    text = terminated.get("message") or ""
    reason = "OOMKilled" if terminated.get("reason") == "OOMKilled" else "RunnerFailed"
    # No result JSON (a log tail instead): the exit code still says which kind of failure.
    reason = _REASON_OF_EXIT_CODE.get(exit_code, reason)
    summary = f"the runner exited with code {exit_code}"
    return reason, _clip(f"{summary}: {text}" if text.strip() else summary)


def run_status(job: dict[str, Any], pods: list[dict[str, Any]]) -> RunStatus:
    """The state of the run that `job` is, given the Pods the Job controller made for it."""
    meta = job["metadata"]
    annotations = meta.get("annotations") or {}
    job_status = job.get("status") or {}
    generation = annotations.get(ANNOTATION_GENERATION)
    attempt = annotations.get(ANNOTATION_ATTEMPT)
    fields: dict[str, Any] = {
        "job": meta["name"],
        "trigger": annotations.get(ANNOTATION_TRIGGER, "Generation"),
        "generation": int(generation) if generation and generation.isdigit() else None,
        "attempt": int(attempt) if attempt and attempt.isdigit() else None,
        "start_time": _time(job_status.get("startTime")),
    }
    if ANNOTATION_RUN_REQUEST in annotations:
        fields["trigger"] = "Requested"
    pods = _newest(pods)
    finished = job_finished(job)

    if finished == "Complete":
        pod = next((p for p in pods if p.get("status", {}).get("phase") == "Succeeded"), None)
        result = parse_result(_terminated(pod).get("message")) if pod else None
        done = _result_fields(result)
        table = (result or {}).get("destination_table")
        rows = done.get("rows")
        message = f"loaded {rows} rows" if rows is not None else "the run succeeded"
        if table:
            message += f" into {table}"
        return RunStatus(
            **fields,
            **done,
            result="Succeeded",
            reason="Succeeded",
            message=message,
            completion_time=_time(
                job_status.get("completionTime")
                or _condition(job, "Complete").get("lastTransitionTime")
            ),
        )

    if finished == "Failed":
        condition = _condition(job, "Failed")
        failed = next((p for p in pods if p.get("status", {}).get("phase") == "Failed"), None)
        reason, message = _failure(failed) if failed else (None, None)
        result = parse_result(_terminated(failed).get("message")) if failed else None
        job_reason = condition.get("reason") or "Failed"
        if job_reason == "DeadlineExceeded" or reason is None:
            # The runner was stopped (or never ran): Kubernetes' reason is the real one.
            reason = job_reason
            message = _clip(
                " ".join(filter(None, [condition.get("message"), message and f"({message})"]))
            )
        elif job_reason == "BackoffLimitExceeded" and job.get("spec", {}).get("backoffLimit"):
            attempts = job["spec"]["backoffLimit"] + 1
            message = _clip(f"{message} (BackoffLimitExceeded: failed {attempts} attempts)")
        return RunStatus(
            **fields,
            **_result_fields(result),
            result="Failed",
            reason=reason,
            message=message or None,
            completion_time=_time(condition.get("lastTransitionTime")),
        )

    for pod in pods:
        state = _container_status(pod).get("state", {})
        waiting = state.get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] not in _STARTING:
            return RunStatus(
                **fields,
                result="Pending",
                reason=waiting["reason"],
                message=_clip(waiting.get("message") or waiting["reason"]),
            )
        if "running" in state:
            return RunStatus(
                **fields, result="Running", reason="Running", message="the runner is running"
            )
        if pod.get("status", {}).get("phase") == "Failed":
            reason, message = _failure(pod)
            return RunStatus(
                **fields,
                result="Running",
                reason="Retrying",
                message=_clip(f"retrying after {reason}: {message}"),
            )
        scheduled = next(
            (
                c
                for c in pod.get("status", {}).get("conditions") or []
                if c.get("type") == "PodScheduled" and c.get("status") == "False"
            ),
            None,
        )
        if scheduled:
            return RunStatus(
                **fields,
                result="Pending",
                reason=scheduled.get("reason") or "Unschedulable",
                message=_clip(scheduled.get("message") or "the Pod cannot be scheduled"),
            )
    if not pods:
        return RunStatus(
            **fields, result="Pending", reason="JobCreated", message="waiting for the Job's Pod"
        )
    return RunStatus(
        **fields, result="Pending", reason="PodPending", message="waiting for the Pod to start"
    )
