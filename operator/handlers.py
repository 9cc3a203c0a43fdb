"""The kopf handlers: gather an Ingestion's Jobs and Pods, call `plan`, carry it out.

Every change to an Ingestion, to one of its Jobs or to one of their Pods leads to the same
`reconcile(namespace, name)`, queued on a `WorkQueue` (one at a time per Ingestion), which
reads the Ingestion from the `IngestionStore` and its Jobs and Pods from the `RunStore`: both
follow the watches and the operator's own writes, and never go back to an older version, so
a reconcile never sees a status older than the last one it planned (a status not written
yet is kept in `unwritten`), nor misses a Job it created.
It lists and gets nothing, and is idempotent: running it twice in a row does nothing the
second time.

kopf watches only the Ingestions, with a watching (`on.event`) handler, so it stores no state
of its own on the objects and adds no finalizer: deleting an Ingestion is left to the garbage
collector, which removes its Jobs and their Pods through ownerReferences.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pydantic import ValidationError

from kingest.operator import clock, rawapi
from kingest.operator.events import EventPoster
from kingest.operator.job import RunnerDefaults, parse_time, render_job
from kingest.operator.logs import run_event
from kingest.operator.metrics import IngestionMetrics
from kingest.operator.reconcile import RUN_REQUESTED, Plan, needs_pods, plan
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
from kingest.operator.store import IngestionStore, Reflector, RunStore
from kingest.operator.validate import InvalidSpec, parse_spec, preload, validate
from kingest.operator.workqueue import WorkQueue

log = logging.getLogger("kingest.operator")
DEFAULT_IMAGE = f"ghcr.io/kingest/kingest:{importlib.metadata.version('kingest')}"


@dataclass
class OperatorSettings:
    """What `kingest operator` is configured with (flags or environment)."""

    runner_image: str = field(
        default_factory=lambda: os.environ.get("KINGEST_RUNNER_IMAGE", DEFAULT_IMAGE)
    )
    # `{"resources": {...}, "securityContext": {...}}` for every runner Pod (the chart's values).
    runner_defaults: dict[str, Any] = field(
        default_factory=lambda: json.loads(os.environ.get("KINGEST_RUNNER_DEFAULTS") or "{}")
    )
    workers: int = 48
    # Namespaces whose Ingestions the operator runs; empty: all of them.
    namespaces: list[str] = field(default_factory=list)
    # Serve /metrics on this port (0: any free port; None: not at all).
    metrics_port: int | None = field(
        default_factory=lambda: (
            int(os.environ["KINGEST_METRICS_PORT"])
            if os.environ.get("KINGEST_METRICS_PORT")
            else None
        )
    )

    # Serve the validating admission webhook on this port, with tls.crt / tls.key from
    # `webhook_cert_dir` (None: no webhook; see `kingest.operator.admission`).
    webhook_port: int | None = field(
        default_factory=lambda: (
            int(os.environ["KINGEST_WEBHOOK_PORT"])
            if os.environ.get("KINGEST_WEBHOOK_PORT")
            else None
        )
    )
    webhook_cert_dir: str = field(
        default_factory=lambda: os.environ.get("KINGEST_WEBHOOK_CERT_DIR") or "/etc/kingest/webhook"
    )

    def runner(self) -> RunnerDefaults:
        """The defaults `render_job` applies where an Ingestion's spec sets nothing."""
        return RunnerDefaults(
            image=self.runner_image,
            resources=self.runner_defaults.get("resources") or None,
            security_context=self.runner_defaults.get("securityContext") or {},
        )


operator_settings = OperatorSettings()
_api: k8s.ApiClient | None = None
metrics = IngestionMetrics()
# Every Ingestion's Jobs and Pods, as the reflectors started in `configure` see them.
store = RunStore()
# Every Ingestion, as kopf's watch and the operator's own status writes show it.
ingestions = IngestionStore()
# Statuses planned but not written yet, by Ingestion: a reconcile that creates a Job leaves
# its status write to the follow lane (see `reconcile`), and every reconcile plans from here
# first, so none acts on the older status meanwhile.
unwritten: dict[tuple[str, str], IngestionStatus] = {}


def reconcile_soon(namespace: str, name: str) -> None:
    """Queue a reconcile of Ingestion `namespace/name` that may start a run (see `WorkQueue`)."""
    queue.add(namespace, name)


def follow_run(namespace: str, name: str) -> None:
    """Queue a reconcile of Ingestion `namespace/name` for its run's progress."""
    queue.follow(namespace, name)


# Wakes each scheduled Ingestion's reconcile at its next slot (`status.nextRunTime`).
slot_timer = SlotTimer(reconcile_soon, workers=1)


def _configuration() -> k8s.Configuration:
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)
    # One connection per worker thread, or urllib3 drops and reopens them.
    configuration.connection_pool_maxsize = operator_settings.workers + 4
    return configuration


def api() -> k8s.ApiClient:
    """The shared API client: in-cluster credentials, or the kubeconfig ($KUBECONFIG)."""
    global _api
    if _api is None:
        _api = k8s.ApiClient(_configuration())
    return _api


def _now(micro: bool = False) -> str:
    moment = clock.now()
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _old_status(raw: dict[str, Any] | None) -> IngestionStatus:
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


def _check(raw_spec: dict[str, Any]) -> tuple[IngestionSpec | None, str | None]:
    """The parsed spec, or what is wrong with it."""
    return _check_text(json.dumps(raw_spec, sort_keys=True))


@functools.lru_cache(maxsize=4096)
def _check_text(spec_text: str) -> tuple[IngestionSpec | None, str | None]:
    # Cached: a spec is checked on every reconcile, but changes rarely, and the runner's
    # `from_uri` checks may build clients (boto3 takes ~0.1 s per client).
    try:
        spec = parse_spec(json.loads(spec_text))
        validate(spec)
    except InvalidSpec as exc:
        return None, str(exc)
    return spec, None


def _raw(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # The API's JSON as plain data: building and re-serialising the client's model objects
    # costs more CPU than everything else a reconcile does.
    return json.loads(call(*args, _preload_content=False, **kwargs).data)


def reconcile(namespace: str, name: str) -> None:
    """Bring Ingestion `namespace/name` one step closer to its spec; see `reconcile.plan`.

    Not safe to run concurrently for one Ingestion: call it through `reconcile_soon`.
    """
    client = api()
    custom, batch = k8s.CustomObjectsApi(client), k8s.BatchV1Api(client)
    obj = ingestions.get(namespace, name)
    if obj is None:
        try:
            obj = _raw(custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        except k8s.ApiException as exc:
            if exc.status == 404:
                _forget((namespace, name))
                return
            raise
        ingestions.seen(obj)
    meta = IngestionMeta.model_validate(obj["metadata"])
    if meta.deletion_timestamp:
        return
    spec, invalid = _check(obj.get("spec") or {})
    old = unwritten.get((namespace, name)) or _old_status(obj.get("status"))
    jobs = store.jobs(meta.uid)
    pods = store.pods(meta.uid) if needs_pods(jobs, old) else []
    step = plan(meta, invalid, old, jobs, pods, _now(), spec)
    for job in step.delete:
        _delete_job(batch, namespace, job)
    created = False
    if step.create is not None:
        manifest = render_job(meta, spec, step.create, operator_settings.runner(), _now(micro=True))
        try:
            jobs_path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
            store.seen("jobs", rawapi.create(client, jobs_path, manifest))
            created = True
        except k8s.ApiException as exc:
            if exc.status == 409:
                job = manifest["metadata"]["name"]
                run_event(log, "RunAdopted", namespace, name, f"{job} already exists", job=job)
            elif exc.status in (400, 422):
                # The API server's validation of the runner's Pod fields (volumes, ...).
                reason = _api_message(exc)
                step = plan(
                    meta, f"the runner Job was rejected: {reason}", old, jobs, pods, _now(), spec
                )
            else:
                raise
    if created:
        # The status write waits in the follow lane, behind every run still to start: when a
        # slot starts 1,000 runs, the last Job exists in half the time. Should the operator
        # stop before writing, the next one derives the same status from the Jobs.
        unwritten[(namespace, name)] = step.status
        _post_events(obj, step)
        follow_run(namespace, name)
    else:
        _write(custom, obj, step)
    _observe((namespace, name), old, step, spec)


# Reconciles wait for the first listing of every Job and Pod: before it, an Ingestion would
# seem to have no runs, and start one again.
queue = WorkQueue(reconcile, operator_settings.workers, ready=store.wait_synced)
events = EventPoster(api, _now, hold=queue.starting)


def _observe(
    key: tuple[str, str], old: IngestionStatus, step: Plan, spec: IngestionSpec | None
) -> None:
    """Set the next wake-up (a slot or a retry); feed the metrics with runs finished since `old`."""
    next_run = step.status.next_run_time
    wake_ups = [parse_time(t) for t in (next_run, step.status.next_retry_time) if t]
    slot_timer.set(key, min(wake_ups) if wake_ups else None)
    metrics.set_next_run(
        key,
        parse_time(next_run).timestamp() if next_run else None,
        _schedule_interval_s(spec, next_run),
    )
    # From the status too: after a restart the gauges hold before the next run finishes.
    last_success = step.status.last_successful_time
    finished = next((r for r in step.status.runs if r.result in ("Succeeded", "Failed")), None)
    metrics.set_outcome(
        key,
        parse_time(last_success).timestamp() if last_success else None,
        finished.result == "Succeeded" if finished else None,
    )
    counted = {run.job for run in old.runs if run.result in ("Succeeded", "Failed")}
    for run in reversed(step.status.runs):
        if run.result not in ("Succeeded", "Failed") or run.job in counted:
            continue
        finished = parse_time(run.completion_time).timestamp() if run.completion_time else 0.0
        metrics.record_run(
            key,
            run.job,
            succeeded=run.result == "Succeeded",
            finished_at=finished,
            duration_s=run.duration_s,
            rows=run.rows or 0,
            bytes_loaded=run.bytes or 0,
        )


def _schedule_interval_s(spec: IngestionSpec | None, next_run: str | None) -> float | None:
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


def _forget(key: tuple[str, str]) -> None:
    unwritten.pop(key, None)
    slot_timer.set(key, None)
    metrics.forget(key)


def _api_message(exc: k8s.ApiException) -> str:
    try:
        return redact(str(json.loads(exc.body).get("message") or exc.reason))
    except (TypeError, ValueError):
        return str(exc.reason)


def _delete_job(batch: k8s.BatchV1Api, namespace: str, name: str) -> None:
    try:
        # Foreground: the Job stays (and blocks the next run) until its Pods are gone.
        deleting = _raw(
            batch.delete_namespaced_job, name, namespace, propagation_policy="Foreground"
        )
        if deleting.get("kind") == "Job":
            store.seen("jobs", deleting)
        log.info("deleted Job %s/%s", namespace, name)
    except k8s.ApiException as exc:
        if exc.status != 404:
            raise


def _write(custom: k8s.CustomObjectsApi, obj: dict[str, Any], step: Plan) -> None:
    meta = obj["metadata"]
    key = (meta["namespace"], meta["name"])
    status = step.status.wire()
    if status != (obj.get("status") or {}):
        # A JSON patch replacing the whole status: a merge patch would keep stale keys.
        written = _raw(
            custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            meta["namespace"],
            PLURAL,
            meta["name"],
            [{"op": "add", "path": "/status", "value": status}],
            _content_type="application/json-patch+json",
        )
        ingestions.seen(written)
    unwritten.pop(key, None)
    _post_events(obj, step)


def _post_events(obj: dict[str, Any], step: Plan) -> None:
    """Post the plan's Events, each also one log line (see `kingest.operator.logs`)."""
    meta = obj["metadata"]
    for event in step.events:
        run_event(
            log, event.reason, meta["namespace"], meta["name"], event.message, type=event.type
        )
        events.post(obj, event)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf would otherwise post handler log lines as Events; the operator posts its own.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    if operator_settings.webhook_port is not None:
        from kingest.operator import admission

        admission.configure(
            settings, operator_settings.webhook_port, operator_settings.webhook_cert_dir
        )
    api()
    events.start()
    preload()
    watching = k8s.ApiClient(_configuration())
    for kind in ("jobs", "pods"):
        for namespace in operator_settings.namespaces or [None]:
            Reflector(watching, kind, namespace, store, follow_run).start()
    queue.start()
    slot_timer.start()


def wants_reconcile(event_type: str | None, body: dict[str, Any]) -> bool:
    """Whether an Ingestion event can change anything: it is new to this operator, or asks
    for a run its status has not acted on.

    Status-only changes (the operator's own writes) are skipped: a run's progress arrives
    through its Job's and Pod's events instead.
    """
    if event_type in (None, "ADDED"):  # None: listed when the operator (re)starts
        return True
    if event_type == "DELETED":
        return False
    status = body.get("status") or {}
    meta = body["metadata"]
    request = (meta.get("annotations") or {}).get(RUN_REQUESTED)
    return (
        not status
        or meta.get("generation") != status.get("observedGeneration")
        or (request is not None and request != status.get("handledRunRequest"))
    )


@kopf.on.event(GROUP, VERSION, PLURAL)
async def ingestion_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
    """An Ingestion was created, listed at start, deleted, or its spec or run request changed.

    Only queues the work: kopf's event loop never waits for the API server on our behalf.
    """
    if type == "DELETED":
        ingestions.gone(body)
        _forget((body["metadata"]["namespace"], body["metadata"]["name"]))
        return
    ingestions.seen(dict(body))
    if wants_reconcile(type, body):
        reconcile_soon(body["metadata"]["namespace"], body["metadata"]["name"])
