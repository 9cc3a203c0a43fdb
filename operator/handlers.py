"""The kopf handlers: the operator's state is built at start-up and fed by the watches.

- `start` (`on.startup`) configures kopf, waits to hold the leader-election Lease when
  `kingest operator` asked for it (kopf starts no watch and serves no webhook before its
  startup handlers return), and builds the `Reconciler` from the `OperatorConfig` and
  `IngestionMetrics` that `kingest operator` put in `memo`, and keeps it there with the
  Jobs' and Pods' reflectors: no module creates state at import. `stop` (`on.cleanup`) stops
  them and hands the Lease over.
- `ingestion_changed` (`on.event` on Ingestions) keeps the Ingestion store current and queues
  a reconcile when the event asks for something (see `wants_reconcile`).

The Jobs and Pods of Ingestions are watched by `store.Reflector`, not by kopf: see
`kingest.operator.store` and `operator/README.md` for why (a measured cost).

Every change to an Ingestion, to one of its Jobs or to one of their Pods leads to the same
`Reconciler.reconcile(namespace, name)`, one at a time per Ingestion. kopf watches with a
watching (`on.event`) handler only, so it stores no state of its own on the objects and adds
no finalizer: deleting an Ingestion is left to the garbage collector, which removes its Jobs
and their Pods through ownerReferences. The handler is a coroutine that only reads and
queues: kopf's event loop never waits for the API server on its behalf.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kingest.operator import collector, rawapi
from kingest.operator.config import OperatorConfig
from kingest.operator.leader import LeaseElection
from kingest.operator.metrics import IngestionMetrics
from kingest.operator.reconcile import RUN_REQUESTED
from kingest.operator.reconciler import Reconciler
from kingest.operator.spec import GROUP, PLURAL, VERSION
from kingest.operator.store import Reflector
from kingest.operator.validate import preload

log = logging.getLogger("kingest.operator")


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no "last handled" state: no handler here compares an object's old and new spec
    (only `on.event` and `validate`), and kopf's default storage deep-copies every watched
    object on each of its events to find out."""

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
    if config.webhook_port is not None:
        from kingest.operator import admission

        admission.configure(settings, config.webhook_port, config.webhook_cert_dir)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Lead (if asked to), then build the operator's state once, from what is in `memo`."""
    config: OperatorConfig = memo.setdefault("config", OperatorConfig())
    metrics: IngestionMetrics = memo.setdefault("metrics", IngestionMetrics())
    _configure_kopf(settings, config)
    # All that takes seconds (the sources' imports, the API client's models) before leading:
    # it would hold back the Lease's renewals.
    preload()
    # What start-up built stays for good: out of every later garbage collection.
    collector.settle()
    # A connection for each worker and a few for the Event poster.
    api = rawapi.AsyncApi(config.api_configuration(), connections=config.workers + 4)
    reconciler = Reconciler(config, api, metrics)
    scopes = [
        (kind, namespace) for kind in ("jobs", "pods") for namespace in config.namespaces or [None]
    ]
    # Each watch holds its connection for minutes: a pool of their own.
    watching = rawapi.AsyncApi(config.api_configuration(), connections=len(scopes))
    reflectors = [
        Reflector(watching, kind, namespace, reconciler.runs, reconciler.queue.follow)
        for kind, namespace in scopes
    ]
    election: LeaseElection | None = memo.get("election")
    if election is not None:
        metrics.leading = False
        await election.wait_to_lead()
        election.keep_leading()
        metrics.leading = True
    for reflector in reflectors:
        reflector.start()
    reconciler.start()
    memo.reflectors, memo.watching, memo.reconciler = reflectors, watching, reconciler


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop acting, and hand the Lease over instead of letting it expire."""
    for reflector in memo.get("reflectors", []):
        await reflector.stop()
    watching: rawapi.AsyncApi | None = memo.get("watching")
    if watching is not None:
        await watching.close()
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
