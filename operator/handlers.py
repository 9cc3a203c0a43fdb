"""The kopf handlers: build the operator's state at start-up, and feed it what kopf watches.

- `start` (`on.startup`) configures kopf and builds the `Reconciler` (clients, stores, queue,
  Event poster, slot timer) from the `OperatorConfig` and `IngestionMetrics` that
  `kingest operator` put in `memo`, and keeps it there: no module creates state at import.
- `ingestion_changed` (`on.event` on Ingestions) keeps the Ingestion store current and queues
  a reconcile when the event asks for something (see `wants_reconcile`).

Every change to an Ingestion, to one of its Jobs or to one of their Pods leads to the same
`Reconciler.reconcile(namespace, name)`, one at a time per Ingestion. kopf watches the
Ingestions with a watching (`on.event`) handler, so it stores no state of its own on the
objects and adds no finalizer: deleting an Ingestion is left to the garbage collector, which
removes its Jobs and their Pods through ownerReferences.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes import client as k8s

from kingest.operator.config import OperatorConfig
from kingest.operator.metrics import IngestionMetrics
from kingest.operator.reconcile import RUN_REQUESTED
from kingest.operator.reconciler import Reconciler
from kingest.operator.spec import GROUP, PLURAL, VERSION
from kingest.operator.store import Reflector
from kingest.operator.validate import preload

log = logging.getLogger("kingest.operator")


def _configure_kopf(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    # kopf would otherwise post handler log lines as Events; the operator posts its own.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    if config.webhook_port is not None:
        from kingest.operator import admission

        admission.configure(settings, config.webhook_port, config.webhook_cert_dir)


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Build the operator's state once, from what `kingest operator` put in `memo`."""
    config: OperatorConfig = memo.setdefault("config", OperatorConfig())
    metrics: IngestionMetrics = memo.setdefault("metrics", IngestionMetrics())
    _configure_kopf(settings, config)
    reconciler = Reconciler(config, k8s.ApiClient(config.api_configuration()), metrics)
    preload()
    watching = k8s.ApiClient(config.api_configuration())
    for kind in ("jobs", "pods"):
        for namespace in config.namespaces or [None]:
            Reflector(watching, kind, namespace, reconciler.runs, reconciler.queue.follow).start()
    reconciler.start()
    memo.reconciler = reconciler


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
    """An Ingestion was created, listed at start, deleted, or its spec or run request changed.

    Only queues the work: kopf's event loop never waits for the API server on our behalf.
    """
    reconciler: Reconciler = memo.reconciler
    if type == "DELETED":
        reconciler.ingestion_gone(body)
        return
    reconciler.ingestion_seen(dict(body))
    if wants_reconcile(type, body):
        reconciler.queue.add(body["metadata"]["namespace"], body["metadata"]["name"])
