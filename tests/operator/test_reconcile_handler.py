"""`Reconciler.reconcile` in this process, against the real API server (no operator running)."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client as k8s

from kingest.operator.config import OperatorConfig
from kingest.operator.metrics import IngestionMetrics
from kingest.operator.rawapi import AsyncApi
from kingest.operator.reconciler import Reconciler
from kingest.operator.spec import GROUP, PLURAL, VERSION

SPEC = {
    "source": {"uri": "duckdb:////data/records.db", "table": "public.users"},
    "destination": {"uri": "s3://?endpoint_url=http://127.0.0.1:9", "table": "bucket/records"},
}


def test_a_created_job_is_followed_by_its_status_and_no_reconcile_plans_from_before_it(
    kube_api: k8s.ApiClient, ingestion_crd: None, namespace: str
) -> None:
    # Built, not started: what a reconcile hands on (queue, Events) stays to be looked at.
    # The Jobs come from the operator's own writes only (no reflector runs here).
    config = OperatorConfig(runner_image="kingest")
    reconciler = Reconciler(config, AsyncApi(kube_api.configuration, 4), IngestionMetrics())
    custom, batch = k8s.CustomObjectsApi(kube_api), k8s.BatchV1Api(kube_api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Ingestion", "metadata": {"name": "sync"}}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body | {"spec": SPEC})

    def stored_status() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "sync")
        return obj.get("status")

    async def twice() -> None:
        await reconciler.reconcile(namespace, "sync")
        jobs = [job.metadata.name for job in batch.list_namespaced_job(namespace).items]
        assert len(jobs) == 1
        # The status write waits for the follow lane; until then it is kept, planned.
        assert stored_status() is None
        planned = reconciler.unwritten[(namespace, "sync")]
        assert [(run.job, run.result) for run in planned.runs] == [(jobs[0], "Pending")]
        assert reconciler.queue._queued == {(namespace, "sync"): "follow"}

        await reconciler.reconcile(namespace, "sync")
        assert [job.metadata.name for job in batch.list_namespaced_job(namespace).items] == jobs
        status = stored_status()
        assert status is not None and status["observedGeneration"] == 1
        assert [run["job"] for run in status["runs"]] == jobs
        assert reconciler.unwritten == {}
        assert [event.reason for event in reconciler.events.pending()] == ["RunCreated"]
        await reconciler.api.close()

    asyncio.run(twice())
