"""What to do about one Ingestion, given its Jobs and Pods as they are now (pure).

`plan` is the operator's whole decision: which run (if any) is due, whether its Job can be
created now, and the status and Events that describe the result. The handlers only gather
the inputs and carry out the plan, so every rule here is tested without a cluster.

Rules:

- a run is due for each new spec generation, and for each new value of the
  `kingest.io/run-requested` annotation (a new generation's run covers a pending request);
- a due run's Job has a deterministic name: if it exists, it is adopted;
- never two runs at once (they would fight over one DuckDB file): a due run waits while
  another is active, except that an active run whose Pod never started a container (a
  missing Secret, an image that cannot be pulled) is superseded: deleted, and the new run
  created once it is gone;
- an invalid spec starts nothing and says what to fix; the next generation is checked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kingest.operator.job import ANNOTATION_CREATED_AT, Run, job_name
from kingest.operator.spec import (
    Condition,
    ConditionStatus,
    IngestionMeta,
    IngestionStatus,
    RunStatus,
)
from kingest.operator.status import has_started, job_finished, run_status

RUN_REQUESTED = "kingest.io/run-requested"
HISTORY_LIMIT = 10
JobDict = dict
PodDict = dict


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the Ingestion."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What the handlers carry out: create at most one Job, delete superseded ones, patch status."""

    status: IngestionStatus
    create: Run | None = None
    delete: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()


def _order(job: JobDict) -> tuple[str, str]:
    meta = job["metadata"]
    created = (meta.get("annotations") or {}).get(ANNOTATION_CREATED_AT)
    return created or meta.get("creationTimestamp") or "", meta["name"]


def pods_of(job: JobDict, pods: list[PodDict]) -> list[PodDict]:
    """The Pods the Job controller created for `job`."""
    name = job["metadata"]["name"]
    return [p for p in pods if (p["metadata"].get("labels") or {}).get("job-name") == name]


def _describe(run: Run) -> str:
    if run.trigger == "Requested":
        return f"run request {run.run_request!r}"
    return f"spec generation {run.generation}"


def _condition(
    old: IngestionStatus,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> Condition:
    previous = next((c for c in old.conditions if c.type == type_), None)
    changed = previous is None or previous.status != status
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now if changed else previous.last_transition_time,
        observed_generation=generation,
    )


def _history(
    derived: list[RunStatus], old: IngestionStatus, created: RunStatus | None
) -> list[RunStatus]:
    # Jobs deleted by their TTL keep their last known outcome from the previous status.
    current = {run.job for run in derived}
    kept = [run for run in old.runs if run.job not in current]
    runs = ([created] if created else []) + derived + kept
    return runs[:HISTORY_LIMIT]


def _run_events(old: RunStatus | None, new: RunStatus | None) -> list[Event]:
    if new is None:
        return []
    if old is not None and (old.job, old.result, old.reason) == (new.job, new.result, new.reason):
        return []
    message = f"{new.job}: {new.message or new.reason or new.result}"
    if new.result == "Succeeded":
        return [Event("Normal", "RunSucceeded", message)]
    if new.result == "Failed":
        return [Event("Warning", new.reason or "RunFailed", message)]
    if new.result == "Running" and new.reason == "Running":
        return [Event("Normal", "RunStarted", message)]
    if new.result == "Running":
        return [Event("Warning", new.reason or "RunRetrying", message)]
    if new.reason not in (None, "JobCreated", "PodPending"):
        return [Event("Warning", new.reason, message)]
    return []


def _recorded(old: IngestionStatus) -> dict[str, RunStatus]:
    return {run.job: run for run in old.runs if run.result in ("Succeeded", "Failed")}


def needs_pods(jobs: list[JobDict], old: IngestionStatus) -> bool:
    """Whether `plan` needs the Pods: some run is active or finished since the last status.

    A finished run's outcome is recorded in the status once; after that its Pods add nothing,
    which spares listing them on every change of a long-lived Ingestion.
    """
    recorded = _recorded(old)
    return any(not job_finished(j) or j["metadata"]["name"] not in recorded for j in jobs)


def plan(
    meta: IngestionMeta,
    invalid: str | None,
    old: IngestionStatus,
    jobs: list[JobDict],
    pods: list[PodDict],
    now: str,
) -> Plan:
    """Decide the next step for one Ingestion; see the module docstring for the rules.

    `invalid` is what is wrong with the spec (None when it can run); `jobs` and `pods` are
    everything labelled with the Ingestion's uid; `now` is an RFC 3339 timestamp.
    """
    if invalid is None and old.phase == "Invalid" and old.observed_generation == meta.generation:
        # A verdict holds for its generation, also one only the API server could give (a
        # Job it rejected): the spec is checked again when it changes.
        invalid = old.message or "invalid spec"
    jobs = sorted(jobs, key=_order, reverse=True)
    recorded = _recorded(old)
    derived = [
        recorded[job["metadata"]["name"]]
        if job_finished(job) and job["metadata"]["name"] in recorded
        else run_status(job, pods_of(job, pods))
        for job in jobs
    ]
    active = [job for job in jobs if not job_finished(job)]
    request = meta.annotations.get(RUN_REQUESTED)
    generation_due = (old.observed_generation or 0) < meta.generation
    request_due = request is not None and request != old.handled_run_request

    observed, handled = old.observed_generation, old.handled_run_request
    create: Run | None = None
    delete: tuple[str, ...] = ()
    waiting: str | None = None
    events: list[Event] = []

    if invalid is not None:
        # Acted on: this generation (and any request made for it) will never run.
        observed, handled = meta.generation, request
    elif generation_due or request_due:
        run = (
            Run("Generation", meta.generation)
            if generation_due
            else Run("Requested", meta.generation, request)
        )
        name = job_name(meta.name, meta.uid, run)
        if any(job["metadata"]["name"] == name for job in jobs) or not active:
            create = None if any(j["metadata"]["name"] == name for j in jobs) else run
            observed, handled = meta.generation, request
            if create:
                events.append(Event("Normal", "RunCreated", f"{name}: for {_describe(run)}"))
        else:
            blocking = active[0]["metadata"]["name"]
            never_started = not any(has_started(pods_of(job, pods)) for job in active)
            deleting = any(job["metadata"].get("deletionTimestamp") for job in active)
            if never_started and not deleting:
                delete = tuple(job["metadata"]["name"] for job in active)
                events.append(
                    Event(
                        "Normal",
                        "RunSuperseded",
                        f"{', '.join(delete)} never started; replaced by a run for "
                        f"{_describe(run)}",
                    )
                )
            waiting = f"a run for {_describe(run)} waits for {blocking} to finish"

    created = (
        RunStatus(
            job=job_name(meta.name, meta.uid, create),
            trigger=create.trigger,
            generation=create.generation,
            result="Pending",
            reason="JobCreated",
            message="waiting for the Job's Pod",
        )
        if create
        else None
    )
    runs = _history(derived, old, created)
    last_run = runs[0] if runs else None
    succeeded = next((r for r in runs if r.result == "Succeeded"), None)
    last_load_id = succeeded.load_id if succeeded else old.last_load_id
    last_successful_time = succeeded.completion_time if succeeded else old.last_successful_time

    if invalid is not None:
        phase, reason, message = "Invalid", "InvalidSpec", invalid
    elif last_run is None:
        phase, reason, message = "Pending", "NoRun", waiting or "no run yet"
    else:
        phase, reason = last_run.result, last_run.reason or last_run.result
        message = last_run.message or ""
        if waiting:
            message = f"{message}; {waiting}" if message else waiting
    finished = next((r for r in runs if r.result in ("Succeeded", "Failed")), None)
    running = last_run is not None and last_run.result in ("Pending", "Running")
    conditions = [
        _condition(
            old,
            "Ready",
            "True" if phase == "Succeeded" else "False",
            reason,
            message,
            observed,
            now,
        ),
        _condition(
            old,
            "Running",
            "True" if running else "False",
            (last_run.reason or "Running") if running and last_run else "NoActiveRun",
            (last_run.message or "") if running and last_run else "",
            observed,
            now,
        ),
        _condition(
            old,
            "Succeeded",
            "Unknown"
            if finished is None
            else ("True" if finished.result == "Succeeded" else "False"),
            (finished.reason or finished.result) if finished else "NoFinishedRun",
            (finished.message or "") if finished else "",
            observed,
            now,
        ),
    ]
    status = IngestionStatus(
        phase=phase,
        reason=reason,
        message=message,
        observed_generation=observed,
        handled_run_request=handled,
        conditions=conditions,
        last_run=last_run,
        last_load_id=last_load_id,
        last_successful_time=last_successful_time,
        next_run_time=old.next_run_time,
        runs=runs,
    )
    if invalid is not None and (old.phase != "Invalid" or old.message != invalid):
        events.append(Event("Warning", "InvalidSpec", invalid))
    events.extend(_run_events(old.last_run, last_run if not created else None))
    return Plan(status=status, create=create, delete=delete, events=tuple(events))
