"""The kopf handlers: the operator's state is built at start-up and fed by kopf's watches.

- `start` (`on.startup`) configures kopf, waits to hold the leader-election Lease when
  `kingest operator` asked for it (kopf starts no watch and serves no webhook before its
  startup handlers return), and builds the `Reconciler` from the `OperatorConfig` and
  `IngestionMetrics` that `kingest operator` put in `memo`, and keeps it there: no module
  creates state at import. `stop` (`on.cleanup`) stops it and hands the Lease over.
- `ingestion_changed` (`on.event` on Ingestions) keeps the Ingestion store current and queues
  a reconcile when the event asks for something (see `wants_reconcile`).
- `run_jobs` / `run_pods` (`index` on the Jobs and Pods labelled with an Ingestion's uid, by
  that uid) are what reconciles read instead of listing; `job_changed` / `pod_changed`
  (`on.event` on the same) queue the Ingestion's reconcile to follow its run.

Every change to an Ingestion, to one of its Jobs or to one of their Pods leads to the same
`Reconciler.reconcile(namespace, name)`, one at a time per Ingestion. kopf watches with
watching (`on.event`) and indexing handlers only, so it stores no state of its own on the
objects and adds no finalizer: deleting an Ingestion is left to the garbage collector, which
removes its Jobs and their Pods through ownerReferences. Every handler is a coroutine that
only reads and queues: kopf's event loop never waits for the API server on their behalf.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes import client as k8s

from kingest.operator.config import OperatorConfig
from kingest.operator.job import LABEL_INGESTION_UID
from kingest.operator.leader import LeaseElection
from kingest.operator.metrics import IngestionMetrics
from kingest.operator.reconcile import RUN_REQUESTED
from kingest.operator.reconciler import Reconciler
from kingest.operator.spec import GROUP, PLURAL, VERSION
from kingest.operator.store import ingestion_of, owner_uid, slim
from kingest.operator.validate import preload

log = logging.getLogger("kingest.operator")
JOBS = ("batch", "v1", "jobs")
PODS = ("v1", "pods")
OWNED = {LABEL_INGESTION_UID: kopf.PRESENT}


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no "last handled" state: no handler here compares an object's old and new spec
    (only `on.event`, `index` and `validate`), and kopf's default storage deep-copies every
    watched Job and Pod on each of their events to find out (about 0.15 ms per Pod here)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def _configure_kopf(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    # kopf would otherwise post handler log lines as Events; the operator posts its own.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.persistence.diffbase_storage = NoDiffBase()
    # Only the Jobs and Pods of Ingestions, filtered by the API server, not by kopf.
    for resource in (JOBS, PODS):
        settings.watching.label_selectors[resource] = LABEL_INGESTION_UID
    # The reconciles' blocking API calls run on kopf's executor.
    settings.execution.max_workers = config.workers
    if config.webhook_port is not None:
        from kingest.operator import admission

        admission.configure(settings, config.webhook_port, config.webhook_cert_dir)


@kopf.on.startup()
async def start(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    run_jobs: kopf.Index[str, dict[str, Any]],
    run_pods: kopf.Index[str, dict[str, Any]],
    **_: Any,
) -> None:
    """Lead (if asked to), then build the operator's state once, from what is in `memo`."""
    config: OperatorConfig = memo.setdefault("config", OperatorConfig())
    metrics: IngestionMetrics = memo.setdefault("metrics", IngestionMetrics())
    _configure_kopf(settings, config)
    # Before leading: the imports take seconds, which would hold back the Lease's renewals.
    preload()
    election: LeaseElection | None = memo.get("election")
    if election is not None:
        metrics.leading = False
        await election.wait_to_lead()
        election.keep_leading()
        metrics.leading = True
    api = k8s.ApiClient(config.api_configuration())
    memo.reconciler = Reconciler(
        config, api, settings.execution.executor, metrics, run_jobs, run_pods
    )
    memo.reconciler.start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop acting, and hand the Lease over instead of letting it expire."""
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        await reconciler.stop()
    election: LeaseElection | None = memo.get("election")
    if election is not None:
        await election.release()


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
async def ingestion_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """An Ingestion was created, listed at start, deleted, or its spec or run request changed."""
    reconciler: Reconciler = memo.reconciler
    if type == "DELETED":
        reconciler.ingestion_gone(body)
        return
    reconciler.ingestion_seen(dict(body))
    if wants_reconcile(type, body):
        reconciler.queue.add(body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.index(*JOBS, labels=OWNED)
async def run_jobs(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """Each Ingestion's Jobs, by its uid: what `plan` reads of them."""
    return {owner_uid(body) or "": slim(body)}


@kopf.index(*PODS, labels=OWNED)
async def run_pods(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """Each Ingestion's Pods, by its uid: what `run_status` reads of them."""
    return {owner_uid(body) or "": slim(body)}


@kopf.on.event(*JOBS, labels=OWNED)
async def job_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A run's Job changed: follow its Ingestion (the index holds the change already)."""
    reconciler: Reconciler = memo.reconciler
    reconciler.runs.watched(type, body)
    _follow(reconciler, type, body)


@kopf.on.event(*PODS, labels=OWNED)
async def pod_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A run's Pod changed: follow its Ingestion."""
    _follow(memo.reconciler, type, body)


def _follow(reconciler: Reconciler, event_type: str | None, body: kopf.Body) -> None:
    # At start-up (type None: listed) every Ingestion is reconciled anyway.
    ingestion = ingestion_of(body)
    if event_type is not None and ingestion is not None:
        reconciler.queue.follow(*ingestion)
