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


def with_ingestion(kube_api: k8s.ApiClient, namespace: str, spec: dict[str, Any]) -> Reconciler:
    """Ingestion `sync` of `spec` created, and a Reconciler built but not started: what a
    reconcile hands on (queue, Events) stays to be looked at. The Jobs it knows come from its
    own writes only (no reflector runs here)."""
    config = OperatorConfig(runner_image="kingest")
    reconciler = Reconciler(config, AsyncApi(kube_api.configuration, 4), IngestionMetrics())
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Ingestion", "metadata": {"name": "sync"}}
    k8s.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body | {"spec": spec}
    )
    return reconciler


def test_a_created_job_is_followed_by_its_status_and_no_reconcile_plans_from_before_it(
    kube_api: k8s.ApiClient, ingestion_crd: None, namespace: str
) -> None:
    reconciler = with_ingestion(kube_api, namespace, SPEC)
    custom, batch = k8s.CustomObjectsApi(kube_api), k8s.BatchV1Api(kube_api)

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


def test_a_pass_that_starts_a_run_leaves_the_history_clean_up_to_its_follow_up(
    kube_api: k8s.ApiClient, ingestion_crd: None, namespace: str
) -> None:
    # When a slot starts 1,000 runs, deleting old Jobs first would put as many deletions
    # ahead of the creates; the follow-up pass (the status write) does them instead.
    reconciler = with_ingestion(kube_api, namespace, SPEC | {"successfulRunsHistoryLimit": 0})
    custom, batch = k8s.CustomObjectsApi(kube_api), k8s.BatchV1Api(kube_api)

    def job_names() -> list[str]:
        jobs = batch.list_namespaced_job(namespace).items
        return sorted(job.metadata.name for job in jobs if not job.metadata.deletion_timestamp)

    async def runs() -> None:
        await reconciler.reconcile(namespace, "sync")
        await reconciler.reconcile(namespace, "sync")  # the follow-up: status written
        [first] = job_names()
        # The first run succeeds, as the Reflector would show it (no Pods run here).
        done = kube_api.sanitize_for_serialization(batch.read_namespaced_job(first, namespace))
        done["metadata"]["resourceVersion"] = str(int(done["metadata"]["resourceVersion"]) + 1)
        done["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
        assert reconciler.runs.seen("jobs", done)
        # A new generation is due: its run starts, and the succeeded Job (beyond the limit
        # of 0) is still there once it has.
        patch = {"spec": {"source": {"table": "public.customers"}}}
        reconciler.ingestion_seen(
            custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "sync", patch)
        )
        await reconciler.reconcile(namespace, "sync")
        second = [name for name in job_names() if name != first]
        assert len(second) == 1 and first in job_names()
        assert reconciler.queue._queued == {(namespace, "sync"): "follow"}

        await reconciler.reconcile(namespace, "sync")
        assert job_names() == second
        await reconciler.api.close()

    asyncio.run(runs())
