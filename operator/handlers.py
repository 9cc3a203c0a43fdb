"""The kopf handlers: gather an Ingestion's Jobs and Pods, call `plan`, carry it out.

Every change to an Ingestion, to one of its Jobs or to one of their Pods leads to the same
`reconcile(namespace, name)`, serialised per Ingestion, which reads the current state from
the API server (not from the event, which may be older than the last write) and is
idempotent: running it twice in a row does nothing the second time.

The handlers use only watching (`on.event`) handlers, so kopf stores no state of its own on
the objects and adds no finalizer: deleting an Ingestion is left to the garbage collector,
which removes its Jobs and their Pods through ownerReferences.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pydantic import ValidationError

from kingest.operator import clock
from kingest.operator.job import (
    ANNOTATION_INGESTION,
    LABEL_INGESTION_UID,
    RunnerDefaults,
    parse_time,
    render_job,
)
from kingest.operator.metrics import IngestionMetrics
from kingest.operator.reconcile import RUN_REQUESTED, Event, Plan, needs_pods, plan
from kingest.operator.scheduler import SlotTimer
from kingest.operator.spec import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    IngestionMeta,
    IngestionSpec,
    IngestionStatus,
)
from kingest.operator.status import redact
from kingest.operator.validate import InvalidSpec, parse_spec, validate

log = logging.getLogger("kingest.operator")
DEFAULT_IMAGE = f"ghcr.io/kingest/kingest:{importlib.metadata.version('kingest')}"
MAX_EVENT_MESSAGE = 1024


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
    workers: int = 16
    # Serve /metrics on this port (0: any free port; None: not at all).
    metrics_port: int | None = field(
        default_factory=lambda: (
            int(os.environ["KINGEST_METRICS_PORT"])
            if os.environ.get("KINGEST_METRICS_PORT")
            else None
        )
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
# Coalescing: at most one reconcile per Ingestion runs at a time; events arriving meanwhile
# only mark it dirty, and the running one goes round once more. Job, Pod and Ingestion
# events of one Ingestion arrive on different watch streams, and two concurrent reconciles
# could each see "no active run" and start two; a burst of events costs one extra round.
_running: set[tuple[str, str]] = set()
_dirty: set[tuple[str, str]] = set()
_guard = threading.Lock()


metrics = IngestionMetrics()


def _wake(namespace: str, name: str) -> None:
    request_reconcile(namespace, name)


# Wakes each scheduled Ingestion's reconcile at its next slot (`status.nextRunTime`).
slot_timer = SlotTimer(_wake, workers=operator_settings.workers)


def api() -> k8s.ApiClient:
    """The shared API client: in-cluster credentials, or the kubeconfig ($KUBECONFIG)."""
    global _api
    if _api is None:
        configuration = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)
        # One connection per worker thread, or urllib3 drops and reopens them.
        configuration.connection_pool_maxsize = operator_settings.workers + 4
        _api = k8s.ApiClient(configuration)
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

    Not safe to run concurrently for one Ingestion: call it through `request_reconcile`.
    """
    client = api()
    custom, batch, core = (
        k8s.CustomObjectsApi(client),
        k8s.BatchV1Api(client),
        k8s.CoreV1Api(client),
    )
    try:
        obj = _raw(custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
    except k8s.ApiException as exc:
        if exc.status == 404:
            _forget((namespace, name))
            return
        raise
    meta = IngestionMeta.model_validate(obj["metadata"])
    if meta.deletion_timestamp:
        return
    spec, invalid = _check(obj.get("spec") or {})
    old = _old_status(obj.get("status"))
    selector = f"{LABEL_INGESTION_UID}={meta.uid}"
    jobs = _raw(batch.list_namespaced_job, namespace, label_selector=selector)["items"]
    pods = (
        _raw(core.list_namespaced_pod, namespace, label_selector=selector)["items"]
        if needs_pods(jobs, old)
        else []
    )
    step = plan(meta, invalid, old, jobs, pods, _now(), spec)
    for job in step.delete:
        _delete_job(batch, namespace, job)
    if step.create is not None:
        manifest = render_job(meta, spec, step.create, operator_settings.runner(), _now(micro=True))
        try:
            _raw(batch.create_namespaced_job, namespace, manifest)
            log.info("created Job %s/%s", namespace, manifest["metadata"]["name"])
        except k8s.ApiException as exc:
            if exc.status == 409:
                log.info("adopting Job %s/%s", namespace, manifest["metadata"]["name"])
            elif exc.status in (400, 422):
                # The API server's validation of the runner's Pod fields (volumes, ...).
                reason = _api_message(exc)
                step = plan(
                    meta, f"the runner Job was rejected: {reason}", old, jobs, pods, _now(), spec
                )
            else:
                raise
    _write(custom, core, obj, step)
    _observe((namespace, name), old, step)


def _observe(key: tuple[str, str], old: IngestionStatus, step: Plan) -> None:
    """Set the next wake-up and feed the metrics with runs that finished since `old`."""
    next_run = step.status.next_run_time
    slot_timer.set(key, parse_time(next_run) if next_run else None)
    metrics.set_next_run(key, parse_time(next_run).timestamp() if next_run else None)
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


def _forget(key: tuple[str, str]) -> None:
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
        batch.delete_namespaced_job(name, namespace, propagation_policy="Foreground")
        log.info("deleted Job %s/%s", namespace, name)
    except k8s.ApiException as exc:
        if exc.status != 404:
            raise


def _write(
    custom: k8s.CustomObjectsApi, core: k8s.CoreV1Api, obj: dict[str, Any], step: Plan
) -> None:
    meta = obj["metadata"]
    status = step.status.wire()
    if status != (obj.get("status") or {}):
        # A JSON patch replacing the whole status: a merge patch would keep stale keys.
        _raw(
            custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            meta["namespace"],
            PLURAL,
            meta["name"],
            [{"op": "add", "path": "/status", "value": status}],
            _content_type="application/json-patch+json",
        )
    for event in step.events:
        _post_event(core, obj, event)


def _post_event(core: k8s.CoreV1Api, obj: dict[str, Any], event: Event) -> None:
    meta = obj["metadata"]
    now = _now()
    body = {
        "metadata": {"generateName": f"{meta['name'][:200]}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": event.type,
        "reason": event.reason,
        "message": redact(event.message)[:MAX_EVENT_MESSAGE],
        "source": {"component": "kingest-operator"},
        "reportingComponent": "kingest-operator",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        _raw(core.create_namespaced_event, meta["namespace"], body)
    except k8s.ApiException as exc:
        # An Event is a courtesy; losing one must not fail the reconcile.
        log.warning("could not post event %s: %s", event.reason, exc.reason)


def request_reconcile(namespace: str, name: str, attempt: int = 0) -> None:
    """Reconcile Ingestion `namespace/name` now, or after the reconcile already running.

    A failed reconcile is retried with a growing delay: kopf does not retry watch handlers,
    and the next event may be far away (a stale status, a run not started).
    """
    key = (namespace, name)
    with _guard:
        if key in _running:
            _dirty.add(key)
            return
        _running.add(key)
    try:
        while True:
            reconcile(namespace, name)
            with _guard:
                if key not in _dirty:
                    _running.discard(key)
                    return
                _dirty.discard(key)
    except Exception as exc:
        with _guard:
            _running.discard(key)
            _dirty.discard(key)
        delay = min(2**attempt, 60)
        detail = f"{exc.status} {exc.reason}" if isinstance(exc, k8s.ApiException) else repr(exc)
        log.error("reconciling %s/%s failed (%s); retrying in %d s", namespace, name, detail, delay)
        log.debug("reconcile failure", exc_info=True)
        timer = threading.Timer(delay, request_reconcile, (namespace, name, attempt + 1))
        timer.daemon = True
        timer.start()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf would otherwise post handler log lines as Events; the operator posts its own.
    settings.posting.enabled = False
    settings.execution.max_workers = operator_settings.workers
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    api()
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
def ingestion_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
    """An Ingestion was created, listed at start, deleted, or its spec or run request changed."""
    if type == "DELETED":
        _forget((body["metadata"]["namespace"], body["metadata"]["name"]))
    elif wants_reconcile(type, body):
        request_reconcile(body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_INGESTION_UID: kopf.PRESENT})
def job_changed(body: kopf.Body, **_: Any) -> None:
    """A run's Job changed: its Ingestion's status follows."""
    name = (body["metadata"].get("annotations") or {}).get(ANNOTATION_INGESTION)
    if name:
        request_reconcile(body["metadata"]["namespace"], name)


@kopf.on.event("v1", "pods", labels={LABEL_INGESTION_UID: kopf.PRESENT})
def pod_changed(body: kopf.Body, **_: Any) -> None:
    """A run's Pod changed (started, waiting on an image or a Secret, finished)."""
    name = (body["metadata"].get("annotations") or {}).get(ANNOTATION_INGESTION)
    if name:
        request_reconcile(body["metadata"]["namespace"], name)
