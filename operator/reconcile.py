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
- an invalid spec starts nothing and says what to fix; the next generation is checked again;
- a run whose Job is deleted before it finished (`kubectl delete job`, before or after its
  Pod started) has failed: reason JobDeleted;
- a run that failed for a transient reason (`TRANSIENT_REASONS`, the runner's exit code 8) is
  tried again as a new Job (attempt 2, 3, ...) after `spec.retry`'s backoff, up to its limit,
  unless another run is due by then; any other failure is final;
- condition Running is True only while the runner's container runs (not while its Pod waits
  on a Secret or an image).

Scheduled Ingestions (`spec.schedule`) run per slot instead of per generation (a spec change
only moves the next slot; `runOnCreate` adds one run at creation). CronJob's semantics:

- slots after `status.scheduledFrom` (the latest slot run or skipped, or the time of the
  latest edit; the creation time at first) up to `now` are due; only the latest one runs, the
  older ones are counted in `skippedSlots`, so downtime causes at most one catch-up run;
  with `startingDeadlineSeconds` a latest slot older than that is skipped too;
- a slot's Job name is derived from the slot, so a restart or a second replica adopts it;
- while another run is active, Forbid skips the slot (ConcurrencyForbidden), Allow starts it
  alongside, Replace deletes the active Job and starts the slot's run once it is gone;
- `suspend` fires nothing and keeps `scheduledFrom`: on resume the missed slots are due as
  after downtime (one catch-up at most, within the deadline);
- an invalid cron or time zone sets InvalidSchedule and recovers with the next generation;
- finished Jobs beyond the history limits are deleted, oldest first, never before a run
  that starts in the same step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from kingest.operator.job import (
    ANNOTATION_CREATED_AT,
    ANNOTATION_SCHEDULED_AT,
    Run,
    format_time,
    job_name,
    parse_time,
    run_of,
)
from kingest.operator.schedule import InvalidSchedule, Schedule, decide
from kingest.operator.spec import (
    Condition,
    ConditionStatus,
    IngestionMeta,
    IngestionSpec,
    IngestionStatus,
    RunStatus,
)
from kingest.operator.status import has_started, job_finished, run_status
from kingest.runner.errors import SourceUnavailable

RUN_REQUESTED = "kingest.io/run-requested"
HISTORY_LIMIT = 10
# CronJob's defaults; an unscheduled Ingestion keeps all its Jobs unless limits are set.
SCHEDULED_SUCCESSFUL_JOBS = 3
SCHEDULED_FAILED_JOBS = 1
JobDict = dict
PodDict = dict
# Failures that may go away by themselves: retried per spec.retry. Usage, data and
# destination errors (the runner's exit codes 2-7) are not.
TRANSIENT_REASONS = frozenset({SourceUnavailable.reason})
JOB_DELETED = "JobDeleted"


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the Ingestion."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What the handlers carry out: create at most one Job, delete superseded ones, patch status.

    `delete` goes before `create` (a superseded run makes way for the new one); `prune`, the
    finished Jobs beyond the history limits, blocks nothing and can wait until after it.
    """

    status: IngestionStatus
    create: Run | None = None
    delete: tuple[str, ...] = ()
    prune: tuple[str, ...] = ()
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
    if run.trigger == "Schedule" and run.slot is not None:
        return f"schedule slot {format_time(run.slot)}"
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


def ended_by_deletion(run: RunStatus, now: str) -> RunStatus:
    """`run` (its Job gone) as it ended: a run still active when its Job went has failed."""
    if run.result not in ("Pending", "Running"):
        return run
    state = run.result if run.reason in (None, run.result) else f"{run.result}, {run.reason}"
    return run.model_copy(
        update={
            "result": "Failed",
            "reason": JOB_DELETED,
            "message": f"the Job was deleted before the run finished (it was {state}: "
            f"{run.message or run.reason})",
            "completion_time": now,
        }
    )


def _history(derived: list[RunStatus], old: IngestionStatus, now: str) -> list[RunStatus]:
    """The runs, newest first: the Jobs' (`derived`) and the previous status's.

    A run whose Job is gone keeps its last known outcome (a TTL deleted it) or, if it was
    still active, ends as JobDeleted; either way it keeps its place among the others.
    """
    current = {run.job for run in derived}
    position = {run.job: i for i, run in enumerate(old.runs)}
    runs = list(derived)
    for run in old.runs:
        if run.job in current:
            continue
        newer = (i for i, d in enumerate(runs) if position.get(d.job, -1) > position[run.job])
        runs.insert(next(newer, len(runs)), ended_by_deletion(run, now))
    return runs[:HISTORY_LIMIT]


def _retry_event(meta: IngestionMeta, retry: Run, failed: RunStatus, spec: IngestionSpec) -> Event:
    name = job_name(meta.name, meta.uid, retry)
    return Event(
        "Normal",
        "RunRetried",
        f"{name}: attempt {retry.attempt} of {spec.retry.limit + 1} for {_describe(retry)}, "
        f"after {failed.job} failed with {failed.reason}",
    )


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


def next_attempt(
    spec: IngestionSpec | None, last_run: RunStatus | None, jobs: list[JobDict], now: str
) -> tuple[Run | None, str | None]:
    """The retry of `last_run` and when it is due, or (None, None) when it is not retried.

    Retried: a failure for a transient reason, while attempts are left (`spec.retry.limit`
    retries after the first) and its Job still says what the run was for.
    """
    if spec is None or last_run is None or last_run.result != "Failed":
        return None, None
    if last_run.reason not in TRANSIENT_REASONS:
        return None, None
    job = next((j for j in jobs if j["metadata"]["name"] == last_run.job), None)
    if job is None:
        return None, None
    failed = run_of(job)
    if failed.attempt > spec.retry.limit:
        return None, None
    ended = parse_time(last_run.completion_time or now)
    due = ended + timedelta(seconds=spec.retry.delay_s(failed.attempt))
    return failed.retried(), format_time(due)


def _recorded(old: IngestionStatus) -> dict[str, RunStatus]:
    return {run.job: run for run in old.runs if run.result in ("Succeeded", "Failed")}


def needs_pods(jobs: list[JobDict], old: IngestionStatus) -> bool:
    """Whether `plan` needs the Pods: some run is active or finished since the last status.

    A finished run's outcome is recorded in the status once; after that its Pods add nothing,
    which spares listing them on every change of a long-lived Ingestion.
    """
    recorded = _recorded(old)
    return any(not job_finished(j) or j["metadata"]["name"] not in recorded for j in jobs)


@dataclass
class _Slots:
    """The schedule's part of one plan: the slot's run (if it may start now) and status."""

    run: Run | None = None
    delete: tuple[str, ...] = ()
    waiting: str | None = None
    scheduled_from: str | None = None
    last_schedule_time: str | None = None
    skipped: int = 0
    last_skipped: str | None = None
    next_slot: str | None = None
    forbidden: tuple[ConditionStatus, str, str] | None = None
    events: list[Event] = field(default_factory=list)


def _scheduled_at(job: JobDict) -> datetime | None:
    value = (job["metadata"].get("annotations") or {}).get(ANNOTATION_SCHEDULED_AT)
    return parse_time(value) if value else None


def _slots(
    meta: IngestionMeta,
    spec: IngestionSpec,
    schedule: Schedule,
    old: IngestionStatus,
    jobs: list[JobDict],
    active: list[JobDict],
    now: str,
    edited: bool,
    busy: bool,
) -> _Slots:
    """Which slot runs now; `edited`: a new generation; `busy`: this plan already starts a run."""
    now_at = parse_time(now)
    resuming = any(c.type == "Suspended" and c.status == "True" for c in old.conditions)
    if edited and not resuming and old.observed_generation is not None:
        # An edit moves the next slot; slots the new schedule had before now never fire.
        baseline = now_at
    else:
        baseline = parse_time(old.scheduled_from or meta.creation_timestamp or now)
    # The Jobs themselves say which slots ran, should the status have been lost.
    ran = [at for at in map(_scheduled_at, jobs) if at is not None]
    since = max([baseline, *ran])
    out = _Slots(
        scheduled_from=format_time(since),
        last_schedule_time=old.last_schedule_time,
        skipped=old.skipped_slots or 0,
        last_skipped=old.last_skipped_time,
    )
    if ran and (old.last_schedule_time is None or max(ran) > parse_time(old.last_schedule_time)):
        out.last_schedule_time = format_time(max(ran))
    if spec.suspend:
        return out
    decision = decide(schedule, now_at, since, since, spec.starting_deadline_seconds)
    out.skipped += decision.skipped
    if decision.last_skipped is not None:
        out.last_skipped = format_time(decision.last_skipped)
    out.next_slot = format_time(decision.next_slot) if decision.next_slot else None
    if decision.slot is None:
        if decision.skipped:
            out.scheduled_from = out.last_skipped
            out.events.append(
                Event(
                    "Warning",
                    "SlotSkipped",
                    f"slot {out.last_skipped} missed its starting deadline of "
                    f"{spec.starting_deadline_seconds} s",
                )
            )
        return out
    slot = format_time(decision.slot)
    run = Run("Schedule", meta.generation, slot=decision.slot)
    name = job_name(meta.name, meta.uid, run)
    others = [job for job in active if job["metadata"]["name"] != name]
    if busy:
        # One Job per plan: the slot stays due and runs on the next reconcile.
        out.next_slot = slot
        return out
    if any(job["metadata"]["name"] == name for job in jobs):
        out.scheduled_from = out.last_schedule_time = slot
        return out
    if not others or spec.concurrency_policy == "Allow":
        out.run = run
        out.scheduled_from = out.last_schedule_time = slot
        out.forbidden = ("False", "SlotStarted", f"slot {slot} started {name}")
        out.events.append(Event("Normal", "RunCreated", f"{name}: for {_describe(run)}"))
        return out
    blocking = others[0]["metadata"]["name"]
    if spec.concurrency_policy == "Forbid":
        out.skipped += 1
        out.scheduled_from = out.last_skipped = slot
        message = f"slot {slot} skipped: {blocking} is still running (concurrencyPolicy Forbid)"
        out.forbidden = ("True", "RunActive", message)
        out.events.append(Event("Warning", "SlotSkipped", message))
        return out
    out.delete = tuple(
        job["metadata"]["name"] for job in others if not job["metadata"].get("deletionTimestamp")
    )
    if out.delete:
        out.events.append(
            Event(
                "Normal",
                "RunReplaced",
                f"{', '.join(out.delete)} deleted for {_describe(run)} (concurrencyPolicy Replace)",
            )
        )
    out.waiting = f"the run for {_describe(run)} waits for {blocking} to be deleted"
    out.next_slot = slot
    return out


def _beyond_history(
    spec: IngestionSpec | None, jobs: list[JobDict], keep: tuple[str, ...]
) -> tuple[str, ...]:
    """Finished Jobs beyond the history limits (`jobs` newest first), never one in `keep`."""
    if spec is None:
        return ()
    scheduled = spec.schedule is not None
    limits = {
        "Complete": spec.successful_runs_history_limit,
        "Failed": spec.failed_runs_history_limit,
    }
    if scheduled:
        limits["Complete"] = (
            SCHEDULED_SUCCESSFUL_JOBS if limits["Complete"] is None else limits["Complete"]
        )
        limits["Failed"] = SCHEDULED_FAILED_JOBS if limits["Failed"] is None else limits["Failed"]
    beyond: list[str] = []
    for outcome, limit in limits.items():
        if limit is None:
            continue
        finished = [
            job["metadata"]["name"]
            for job in jobs
            if job_finished(job) == outcome and not job["metadata"].get("deletionTimestamp")
        ]
        beyond.extend(name for name in finished[limit:] if name not in keep)
    return tuple(beyond)


def schedule_of(
    spec: IngestionSpec | None, invalid: str | None
) -> tuple[Schedule | None, str | None]:
    """Rule: an invalid cron or time zone is InvalidSchedule. The parsed schedule, or why not."""
    if invalid is not None or spec is None or spec.schedule is None:
        return None, None
    try:
        return Schedule.parse(spec.schedule, spec.time_zone), None
    except InvalidSchedule as exc:
        return None, f"schedule {spec.schedule!r} (timeZone {spec.time_zone!r}): {exc}"


def standing_verdict(meta: IngestionMeta, old: IngestionStatus) -> str | None:
    """Rule: a verdict holds for its generation, also one only the API server could give (a
    Job it rejected); the spec is checked again when it changes."""
    if (
        old.phase == "Invalid"
        and old.reason != "InvalidSchedule"
        and old.observed_generation == meta.generation
    ):
        return old.message or "invalid spec"
    return None


def derive_runs(jobs: list[JobDict], pods: list[PodDict], old: IngestionStatus) -> list[RunStatus]:
    """Each Job's run (`jobs` newest first); a finished run already recorded keeps its record."""
    recorded = _recorded(old)
    return [
        recorded[job["metadata"]["name"]]
        if job_finished(job) and job["metadata"]["name"] in recorded
        else run_status(job, pods_of(job, pods))
        for job in jobs
    ]


@dataclass(frozen=True)
class Due:
    """The run a generation or a run request asks for, and what the status records as
    acted on (`observed` generation, `handled` run request) once it is started."""

    run: Run | None
    observed: int | None
    handled: str | None


def due_run(
    meta: IngestionMeta,
    old: IngestionStatus,
    spec: IngestionSpec | None,
    invalid: str | None,
    scheduled: bool,
) -> Due:
    """Rule: a run is due for each new spec generation (for a scheduled Ingestion only with
    runOnCreate, at creation) and for each new value of the run-requested annotation; an
    invalid spec acts on both without running."""
    request = meta.annotations.get(RUN_REQUESTED)
    generation_due = (old.observed_generation or 0) < meta.generation
    request_due = request is not None and request != old.handled_run_request
    if invalid is not None:
        # Acted on: this generation (and any request made for it) will never run.
        return Due(None, meta.generation, request)
    # A scheduled Ingestion runs per slot; a new generation only moves the next slot.
    observed = meta.generation if scheduled else old.observed_generation
    run: Run | None = None
    if generation_due and (
        not scheduled
        or (spec is not None and spec.run_on_create and old.observed_generation is None)
    ):
        run = Run("Generation", meta.generation)
    elif request_due:
        run = Run("Requested", meta.generation, request)
    return Due(run, observed, old.handled_run_request)


@dataclass(frozen=True)
class Start:
    """Whether the due run starts now: its Job to create, Jobs to delete first, why it waits."""

    create: Run | None = None
    delete: tuple[str, ...] = ()
    waiting: str | None = None
    started: bool = False  # created now or adopted: the generation / request is acted on
    events: tuple[Event, ...] = ()


def start_run(
    meta: IngestionMeta, run: Run, jobs: list[JobDict], pods: list[PodDict], active: list[JobDict]
) -> Start:
    """Rule: never two runs at once. A due run whose Job exists is adopted; with no active run
    it is created; else it waits, and an active run whose Pod never started a container is
    superseded: deleted, the new run created once it is gone."""
    name = job_name(meta.name, meta.uid, run)
    if any(job["metadata"]["name"] == name for job in jobs):
        return Start(started=True)
    if not active:
        created = Event("Normal", "RunCreated", f"{name}: for {_describe(run)}")
        return Start(create=run, started=True, events=(created,))
    blocking = active[0]["metadata"]["name"]
    waiting = f"a run for {_describe(run)} waits for {blocking} to finish"
    never_started = not any(has_started(pods_of(job, pods)) for job in active)
    deleting = any(job["metadata"].get("deletionTimestamp") for job in active)
    if not never_started or deleting:
        return Start(waiting=waiting)
    delete = tuple(job["metadata"]["name"] for job in active)
    superseded = Event(
        "Normal",
        "RunSuperseded",
        f"{', '.join(delete)} never started; replaced by a run for {_describe(run)}",
    )
    return Start(delete=delete, waiting=waiting, events=(superseded,))


def summary(
    invalid: str | None,
    schedule_error: str | None,
    suspended: bool,
    last_run: RunStatus | None,
    next_slot: str | None,
    scheduled: bool,
    waiting: str | None,
    retry_at: str | None,
) -> tuple[str, str, str]:
    """Rule: the phase, reason and message, from the most telling fact: an invalid spec, a
    suspended schedule, no run yet, a retry waiting, else the latest run."""
    running = last_run is not None and last_run.result in ("Pending", "Running")
    if invalid is not None:
        return "Invalid", "InvalidSchedule" if schedule_error else "InvalidSpec", invalid
    if suspended and not running:
        return "Suspended", "Suspended", "spec.suspend is true: no slot fires"
    if last_run is None and scheduled:
        message = f"next run at {next_slot}" if next_slot else "the schedule has no next slot"
        return "Scheduled", "Scheduled", message
    if last_run is None:
        return "Pending", "NoRun", waiting or "no run yet"
    if retry_at is not None:
        return (
            "Pending",
            "RetryScheduled",
            f"{last_run.job} failed with {last_run.reason} ({last_run.message}); "
            f"the next attempt starts at {retry_at}",
        )
    message = last_run.message or ""
    if waiting:
        message = f"{message}; {waiting}" if message else waiting
    return last_run.result, last_run.reason or last_run.result, message


def run_conditions(
    old: IngestionStatus,
    phase: str,
    reason: str,
    message: str,
    runs: list[RunStatus],
    retry_at: str | None,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """Rule: Ready is True after a success; Running only while the runner's container runs
    (not while its Pod waits on a Secret, an image or a node); Succeeded is the latest
    finished run's outcome."""
    last_run = runs[0] if runs else None
    active = last_run is not None and last_run.result in ("Pending", "Running")
    finished = next((r for r in runs if r.result in ("Succeeded", "Failed")), None)
    if active and last_run is not None:
        running = (
            "True" if last_run.reason == "Running" else "False",
            last_run.reason or "Running",
            last_run.message or "",
        )
    else:
        running = ("False", "RetryScheduled", message) if retry_at else ("False", "NoActiveRun", "")
    succeeded = (
        ("Unknown", "NoFinishedRun", "")
        if finished is None
        else (
            "True" if finished.result == "Succeeded" else "False",
            finished.reason or finished.result,
            finished.message or "",
        )
    )
    ready = "True" if phase == "Succeeded" else "False"
    return [
        _condition(old, "Ready", ready, reason, message, generation, now),
        _condition(old, "Running", *running, generation, now),
        _condition(old, "Succeeded", *succeeded, generation, now),
    ]


def plan(
    meta: IngestionMeta,
    invalid: str | None,
    old: IngestionStatus,
    jobs: list[JobDict],
    pods: list[PodDict],
    now: str,
    spec: IngestionSpec | None = None,
) -> Plan:
    """Decide the next step for one Ingestion: the rules' steps above, composed.

    `invalid` is what is wrong with the spec (None when it can run); `spec` is the parsed spec
    (needed for schedules and history limits; None when invalid); `jobs` and `pods` are
    everything labelled with the Ingestion's uid; `now` is an RFC 3339 timestamp.
    """
    schedule, schedule_error = schedule_of(spec, invalid)
    if invalid is None and schedule_error is None:
        invalid = standing_verdict(meta, old)
    invalid = invalid or schedule_error
    scheduled = schedule is not None
    jobs = sorted(jobs, key=_order, reverse=True)
    active = [job for job in jobs if not job_finished(job)]

    due = due_run(meta, old, spec, invalid, scheduled)
    observed, handled = due.observed, due.handled
    start = start_run(meta, due.run, jobs, pods, active) if due.run else Start()
    if start.started:
        observed, handled = meta.generation, meta.annotations.get(RUN_REQUESTED)
    create, delete, waiting = start.create, start.delete, start.waiting
    events: list[Event] = list(start.events)

    slots: _Slots | None = None
    if schedule is not None and spec is not None:
        edited = (old.observed_generation or 0) < meta.generation
        slots = _slots(
            meta, spec, schedule, old, jobs, active, now, edited=edited, busy=create is not None
        )
        if slots.run is not None:
            create = slots.run
        delete = tuple(dict.fromkeys(delete + slots.delete))
        waiting = waiting or slots.waiting
        events.extend(slots.events)

    earlier = _history(derive_runs(jobs, pods, old), old, now)
    suspended = scheduled and spec is not None and spec.suspend
    retry_at: str | None = None
    if create is None and not active and invalid is None and not suspended:
        retry, retry_at = next_attempt(spec, earlier[0] if earlier else None, jobs, now)
        if retry is not None and retry_at is not None and parse_time(retry_at) <= parse_time(now):
            create, retry_at = retry, None
            events.append(_retry_event(meta, retry, earlier[0], spec))
    kept_jobs = (job_name(meta.name, meta.uid, create),) if create else ()
    prune = tuple(name for name in _beyond_history(spec, jobs, kept_jobs) if name not in delete)

    created = _created_run(meta, create) if create else None
    runs = ([created] if created else []) + earlier[: HISTORY_LIMIT - (1 if created else 0)]
    last_run = runs[0] if runs else None
    phase, reason, message = summary(
        invalid,
        schedule_error,
        bool(suspended),
        last_run,
        slots.next_slot if slots else None,
        scheduled,
        waiting,
        retry_at,
    )
    conditions = run_conditions(old, phase, reason, message, runs, retry_at, observed, now)
    if spec is not None and spec.schedule is not None:
        conditions.extend(
            _schedule_conditions(old, slots, schedule_error, bool(suspended), observed, now)
        )
    succeeded = next((r for r in runs if r.result == "Succeeded"), None)
    status = IngestionStatus(
        phase=phase,
        reason=reason,
        message=message,
        observed_generation=observed,
        handled_run_request=handled,
        conditions=conditions,
        last_run=last_run,
        # A successful run with nothing new to load may commit no load: the last one stands.
        last_load_id=next(
            (r.load_id for r in runs if r.result == "Succeeded" and r.load_id), old.last_load_id
        ),
        cursor=next((r.cursor for r in runs if r.cursor and r.cursor.stored), old.cursor),
        last_successful_time=succeeded.completion_time if succeeded else old.last_successful_time,
        next_run_time=slots.next_slot if slots else None,
        next_retry_time=retry_at,
        last_schedule_time=slots.last_schedule_time if slots else old.last_schedule_time,
        scheduled_from=slots.scheduled_from if slots else old.scheduled_from,
        skipped_slots=slots.skipped if slots else old.skipped_slots,
        last_skipped_time=slots.last_skipped if slots else old.last_skipped_time,
        runs=runs,
    )
    if invalid is not None and (old.phase != "Invalid" or old.message != invalid):
        events.append(Event("Warning", reason, invalid))
    events.extend(_run_events(old.last_run, earlier[0] if earlier else None))
    return Plan(status=status, create=create, delete=delete, prune=prune, events=tuple(events))


def _created_run(meta: IngestionMeta, run: Run) -> RunStatus:
    return RunStatus(
        job=job_name(meta.name, meta.uid, run),
        trigger=run.trigger,
        generation=run.generation,
        attempt=run.attempt if run.attempt > 1 else None,
        result="Pending",
        reason="JobCreated",
        message="waiting for the Job's Pod",
    )


def _schedule_conditions(
    old: IngestionStatus,
    slots: _Slots | None,
    schedule_error: str | None,
    suspended: bool,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """Suspended, InvalidSchedule and ConcurrencyForbidden: why a scheduled run is not running."""
    previous = next((c for c in old.conditions if c.type == "ConcurrencyForbidden"), None)
    forbidden = (
        slots.forbidden
        if slots and slots.forbidden
        else (previous.status, previous.reason, previous.message)
        if previous
        else ("False", "NoSlotSkipped", "")
    )
    return [
        _condition(
            old,
            "Suspended",
            "True" if suspended else "False",
            "Suspended" if suspended else "NotSuspended",
            "spec.suspend is true: no slot fires" if suspended else "",
            generation,
            now,
        ),
        _condition(
            old,
            "InvalidSchedule",
            "True" if schedule_error else "False",
            "InvalidSchedule" if schedule_error else "ValidSchedule",
            schedule_error or "",
            generation,
            now,
        ),
        _condition(old, "ConcurrencyForbidden", *forbidden, generation, now),
    ]
