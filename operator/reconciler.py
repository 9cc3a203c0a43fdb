"""Carry out `plan` for one Ingestion: gather its state, create and delete Jobs, write the
status, post the Events, set the next wake-up and the metrics.

A `Reconciler` is built once by the kopf startup handler (`kingest.operator.handlers`) and
kept in kopf's `memo`; it holds everything a reconcile needs (the API client, the stores of
Ingestions and of their Jobs and Pods, the queue, the Event poster, the slot timer, the
metrics). A reconcile reads the Ingestion and its Jobs and Pods from the stores, which follow
kopf's watches and the operator's own writes and never go back to an older version, so it
never sees a status older than the last one it planned (a status not written yet is kept in
`unwritten`), nor misses a Job it created. It lists and gets nothing, and is idempotent:
running it twice in a row does nothing the second time.

Reconciles are coroutines on kopf's event loop, and so are their API calls
(`rawapi.AsyncApi`): the stores, the queue and the timer are touched by the loop alone, and no
thread waits on a reply.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import datetime
from typing import Any

from kubernetes import client as k8s
from pydantic import ValidationError

from kingest.operator import clock, collector, rawapi
from kingest.operator.config import OperatorConfig
from kingest.operator.events import EventPoster
from kingest.operator.job import parse_time, render_job
from kingest.operator.logs import run_event
from kingest.operator.metrics import IngestionMetrics
from kingest.operator.reconcile import Plan, needs_pods, plan
from kingest.operator.schedule import InvalidSchedule, Schedule
from kingest.operator.scheduler import SlotTimer
from kingest.operator.spec import (
    GROUP,
    PLURAL,
    VERSION,
    IngestionMeta,
    IngestionSpec,
    IngestionStatus,
)
from kingest.operator.status import redact
from kingest.operator.store import IngestionStore, RunStore
from kingest.operator.validate import InvalidSpec, parse_spec, validate
from kingest.operator.workqueue import WorkQueue

log = logging.getLogger("kingest.operator")
Key = tuple[str, str]  # (namespace, name)


def _now(micro: bool = False, moment: datetime | None = None) -> str:
    moment = moment or clock.now()
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def old_status(raw: dict[str, Any] | None) -> IngestionStatus:
    """The status as last written, or what an unreadable one says was already run."""
    try:
        return IngestionStatus.model_validate(raw or {})
    except ValidationError:
        # A status written by another version: derived again from the Jobs, except what
        # says which runs were already started (losing that would start them again).
        log.warning("could not read the status; keeping only what it says was run")
        raw = raw or {}
        generation, request = raw.get("observedGeneration"), raw.get("handledRunRequest")
        return IngestionStatus(
            observed_generation=generation if isinstance(generation, int) else None,
            handled_run_request=request if isinstance(request, str) else None,
        )


def check(raw_spec: dict[str, Any]) -> tuple[IngestionSpec | None, str | None]:
    """The parsed spec, or what is wrong with it."""
    return check_text(json.dumps(raw_spec, sort_keys=True))


@functools.lru_cache(maxsize=4096)
def check_text(spec_text: str) -> tuple[IngestionSpec | None, str | None]:
    """`check` of a spec as sorted JSON. Cached: a spec is checked on every reconcile, but
    changes rarely, and the runner's `from_uri` checks may build clients (~0.1 s each)."""
    try:
        spec = parse_spec(json.loads(spec_text))
        validate(spec)
    except InvalidSpec as exc:
        return None, str(exc)
    return spec, None


def _api_message(exc: k8s.ApiException) -> str:
    try:
        return redact(str(json.loads(exc.body).get("message") or exc.reason))
    except (TypeError, ValueError):
        return str(exc.reason)


def schedule_interval_s(spec: IngestionSpec | None, next_run: str | None) -> float | None:
    """Seconds from the next slot to the one after it (the alerts' schedule period)."""
    if spec is None or spec.schedule is None or next_run is None:
        return None
    try:
        schedule = Schedule.parse(spec.schedule, spec.time_zone)
    except InvalidSchedule:
        return None
    slot = parse_time(next_run)
    after = schedule.next_after(slot)
    return (after - slot).total_seconds() if after else None


class Reconciler:
    """The operator's state, and the one way it acts on an Ingestion (`reconcile`)."""

    def __init__(
        self,
        config: OperatorConfig,
        api: rawapi.AsyncApi,
        metrics: IngestionMetrics,
    ) -> None:
        self.config, self.api, self.metrics = config, api, metrics
        # Every Ingestion's Jobs and Pods, as the reflectors and the operator's writes show them.
        self.runs = RunStore()
        # Every Ingestion, as kopf's watch and the operator's own status writes show it.
        self.ingestions = IngestionStore()
        # Statuses planned but not written yet: a reconcile that creates a Job leaves its
        # status write to the follow lane, and every reconcile plans from here first, so
        # none acts on the older status meanwhile.
        self.unwritten: dict[Key, IngestionStatus] = {}
        # Reconciles wait for the first listing of every Job and Pod: before it, an
        # Ingestion would seem to have no runs, and start one again. No garbage collection
        # while runs are being started (see `kingest.operator.collector`).
        self.queue = WorkQueue(
            self.reconcile,
            config.workers,
            ready=self.runs.wait_synced,
            on_starting=collector.StartsHold(),
        )
        self.events = EventPoster(api.create, _now, hold=self.queue.starting)
        # Wakes each scheduled Ingestion's reconcile at its next slot or retry.
        self.slots = SlotTimer(self.queue.add)

    def start(self) -> None:
        """Start working off the queue, posting Events and waking slots (on the running loop)."""
        self.events.start()
        self.queue.start()
        self.slots.start()

    async def stop(self) -> None:
        """Stop the queue, the Event poster and the slot timer; close the connections."""
        await self.slots.stop()
        await self.queue.stop()
        await self.events.stop()
        await self.api.close()

    def ingestion_seen(self, body: dict[str, Any]) -> None:
        """An Ingestion as kopf's watch shows it."""
        self.ingestions.seen(body)

    def ingestion_gone(self, body: dict[str, Any]) -> None:
        """A deleted Ingestion: its state, wake-up and metrics go."""
        self.ingestions.gone(body)
        self.forget((body["metadata"]["namespace"], body["metadata"]["name"]))

    def forget(self, key: Key) -> None:
        self.unwritten.pop(key, None)
        self.slots.set(key, None)
        self.metrics.forget(key)

    async def reconcile(self, namespace: str, name: str) -> None:
        """Bring Ingestion `namespace/name` one step closer to its spec; see `reconcile.plan`.

        Not safe to run concurrently for one Ingestion: call it through `queue`.
        """
        obj = self.ingestions.get(namespace, name)
        if obj is None:
            try:
                obj = await self.api.get(
                    f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
                )
            except k8s.ApiException as exc:
                if exc.status == 404:
                    self.forget((namespace, name))
                    return
                raise
            self.ingestions.seen(obj)
        meta = IngestionMeta.model_validate(obj["metadata"])
        if meta.deletion_timestamp:
            return
        spec, invalid = check(obj.get("spec") or {})
        old = self.unwritten.get((namespace, name)) or old_status(obj.get("status"))
        jobs = self.runs.jobs(meta.uid)
        pods = self.runs.pods(meta.uid) if needs_pods(jobs, old) else []
        # One reading of the clock for the plan and the Job it creates (the test clock is a
        # file read).
        moment = clock.now()
        step = plan(meta, invalid, old, jobs, pods, _now(moment=moment), spec)
        for job in step.delete:
            await self._delete_job(namespace, job)
        created = False
        if step.create is not None:
            runner = self.config.runner()
            manifest = render_job(meta, spec, step.create, runner, _now(True, moment))
            try:
                jobs_path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
                self.runs.seen("jobs", await self.api.create(jobs_path, manifest))
                created = True
            except k8s.ApiException as exc:
                if exc.status == 409:
                    job = manifest["metadata"]["name"]
                    run_event(log, "RunAdopted", namespace, name, f"{job} already exists", job=job)
                elif exc.status in (400, 422):
                    # The API server's validation of the runner's Pod fields (volumes, ...).
                    rejected = f"the runner Job was rejected: {_api_message(exc)}"
                    step = plan(meta, rejected, old, jobs, pods, _now(), spec)
                else:
                    raise
        if created:
            # The status write waits in the follow lane, behind every run still to start:
            # when a slot starts 1,000 runs, the last Job exists in half the time. Should the
            # operator stop before writing, the next one derives the same status from the Jobs.
            # So does the history clean-up: the follow-up pass plans the same deletions.
            self.unwritten[(namespace, name)] = step.status
            self._post_events(obj, step)
            self.queue.follow(namespace, name)
        else:
            await self._write(obj, step)
            # After the status: a deletion that fails (and is retried) holds up neither a
            # run's start nor the status that tells of it.
            for job in step.prune:
                await self._delete_job(namespace, job)
        self._observe((namespace, name), old, step, spec)

    def _observe(
        self, key: Key, old: IngestionStatus, step: Plan, spec: IngestionSpec | None
    ) -> None:
        """Set the next wake-up (a slot or a retry); feed the metrics with runs finished
        since `old`."""
        next_run = step.status.next_run_time
        wake_ups = [parse_time(t) for t in (next_run, step.status.next_retry_time) if t]
        self.slots.set(key, min(wake_ups) if wake_ups else None)
        self.metrics.set_next_run(
            key,
            parse_time(next_run).timestamp() if next_run else None,
            schedule_interval_s(spec, next_run),
        )
        # From the status too: after a restart the gauges hold before the next run finishes.
        last_success = step.status.last_successful_time
        finished = next((r for r in step.status.runs if r.result in ("Succeeded", "Failed")), None)
        self.metrics.set_outcome(
            key,
            parse_time(last_success).timestamp() if last_success else None,
            finished.result == "Succeeded" if finished else None,
        )
        counted = {run.job for run in old.runs if run.result in ("Succeeded", "Failed")}
        for run in reversed(step.status.runs):
            if run.result not in ("Succeeded", "Failed") or run.job in counted:
                continue
            finished_at = (
                parse_time(run.completion_time).timestamp() if run.completion_time else 0.0
            )
            self.metrics.record_run(
                key,
                run.job,
                succeeded=run.result == "Succeeded",
                finished_at=finished_at,
                duration_s=run.duration_s,
                rows=run.rows or 0,
                bytes_loaded=run.bytes or 0,
            )

    async def _delete_job(self, namespace: str, name: str) -> None:
        try:
            # Foreground: the Job stays (and blocks the next run) until its Pods are gone.
            deleting = await self.api.delete(
                f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", propagation="Foreground"
            )
            if deleting.get("kind") == "Job":
                self.runs.seen("jobs", deleting)
            log.info("deleted Job %s/%s", namespace, name)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise

    async def _write(self, obj: dict[str, Any], step: Plan) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        status = step.status.wire()
        if status != (obj.get("status") or {}):
            # A JSON patch replacing the whole status: a merge patch would keep stale keys.
            path = (
                f"/apis/{GROUP}/{VERSION}/namespaces/{meta['namespace']}/{PLURAL}/"
                f"{meta['name']}/status"
            )
            written = await self.api.patch(
                path, [{"op": "add", "path": "/status", "value": status}]
            )
            self.ingestions.seen(written)
        self.unwritten.pop(key, None)
        self._post_events(obj, step)

    def _post_events(self, obj: dict[str, Any], step: Plan) -> None:
        """Post the plan's Events, each also one log line (see `kingest.operator.logs`)."""
        meta = obj["metadata"]
        for event in step.events:
            run_event(
                log, event.reason, meta["namespace"], meta["name"], event.message, type=event.type
            )
            self.events.post(obj, event)
