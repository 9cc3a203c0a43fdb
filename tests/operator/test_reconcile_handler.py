"""`handlers.reconcile` in this process, against the real API server (no operator running)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from kingest.operator import handlers
from kingest.operator.events import EventPoster
from kingest.operator.spec import GROUP, PLURAL, VERSION
from kingest.operator.store import IngestionStore, RunStore
from kingest.operator.workqueue import WorkQueue

SPEC = {
    "source": {"uri": "duckdb:////data/records.db", "table": "public.users"},
    "destination": {"uri": "s3://?endpoint_url=http://127.0.0.1:9", "table": "bucket/records"},
}


@pytest.fixture
def operator_state(kube_api: k8s.ApiClient, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Fresh stores and queues for `handlers`, nothing started: what reconcile hands on stays."""
    state = {
        "unwritten": {},
        "ingestions": IngestionStore(),
        "store": RunStore(),
        "queue": WorkQueue(lambda *key: None),
        "events": EventPoster(lambda: kube_api, lambda: "2026-12-01T10:00:00Z"),
        "_api": kube_api,
    }
    for name, value in state.items():
        monkeypatch.setattr(handlers, name, value)
    return state


def test_a_created_job_is_followed_by_its_status_and_no_reconcile_plans_from_before_it(
    kube_api: k8s.ApiClient, ingestion_crd: None, namespace: str, operator_state: dict[str, Any]
) -> None:
    custom, batch = k8s.CustomObjectsApi(kube_api), k8s.BatchV1Api(kube_api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Ingestion", "metadata": {"name": "sync"}}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body | {"spec": SPEC})

    def stored_status() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "sync")
        return obj.get("status")

    handlers.reconcile(namespace, "sync")
    jobs = [job.metadata.name for job in batch.list_namespaced_job(namespace).items]
    assert len(jobs) == 1
    # The status write waits for the follow lane; until then it is kept, planned.
    assert stored_status() is None
    planned = operator_state["unwritten"][(namespace, "sync")]
    assert [(run.job, run.result) for run in planned.runs] == [(jobs[0], "Pending")]
    assert operator_state["queue"]._queued == {(namespace, "sync"): "follow"}

    handlers.reconcile(namespace, "sync")
    assert [job.metadata.name for job in batch.list_namespaced_job(namespace).items] == jobs
    status = stored_status()
    assert status is not None and status["observedGeneration"] == 1
    assert [run["job"] for run in status["runs"]] == jobs
    assert operator_state["unwritten"] == {}
    pending = operator_state["events"]._pending
    assert [pending.get_nowait()[1].reason for _ in range(pending.qsize())] == ["RunCreated"]
