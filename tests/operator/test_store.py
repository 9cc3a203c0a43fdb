"""RunStore: kopf's indexes overlaid with the operator's own writes; IngestionStore only moves
forward: newer versions win, deletions stay."""

from __future__ import annotations

from typing import Any

from kingest.operator.job import ANNOTATION_INGESTION, LABEL_INGESTION_UID
from kingest.operator.store import IngestionStore, RunStore, ingestion_of, slim


def job(uid: str, version: int, owner: str = "owner-1", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"job-{uid}",
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": str(version),
            "labels": {LABEL_INGESTION_UID: owner},
            "annotations": {ANNOTATION_INGESTION: "sync"},
            "managedFields": [{"manager": "kube-controller-manager"}],
        },
        "spec": {"backoffLimit": 2, "template": {"spec": {"containers": [{"name": "runner"}]}}},
        "status": status,
    }


def indexed(*bodies: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """What kopf's index by the Ingestion's uid holds for these objects."""
    index: dict[str, list[dict[str, Any]]] = {}
    for body in bodies:
        index.setdefault(body["metadata"]["labels"][LABEL_INGESTION_UID], []).append(slim(body))
    return index


def test_only_what_plan_reads_is_kept() -> None:
    kept = slim(job("a", 1))
    assert kept["spec"] == {"backoffLimit": 2}
    assert "managedFields" not in kept["metadata"]
    assert ingestion_of(kept) == ("ns", "sync")


def test_a_job_the_operator_created_is_seen_before_the_watch_brings_it() -> None:
    jobs: dict[str, list[dict[str, Any]]] = {}
    store = RunStore(jobs, {})
    store.wrote(job("a", 10))
    assert [j["metadata"]["uid"] for j in store.jobs("owner-1")] == ["a"]
    jobs.update(indexed(job("a", 10)))
    store.watched("ADDED", job("a", 10))
    assert [j["metadata"]["uid"] for j in store.jobs("owner-1")] == ["a"]
    jobs.update(indexed(job("a", 12, succeeded=1)))
    assert store.jobs("owner-1")[0]["status"] == {"succeeded": 1}


def test_an_older_write_never_replaces_what_the_watch_showed() -> None:
    store = RunStore(indexed(job("a", 11, succeeded=1)), {})
    store.wrote(job("a", 9, active=1))  # a reply that arrived after the watch's event
    assert store.jobs("owner-1")[0]["status"] == {"succeeded": 1}


def test_a_deleted_job_does_not_come_back() -> None:
    store = RunStore({}, {})
    store.wrote(job("a", 5))
    store.watched("DELETED", job("a", 6))
    assert store.jobs("owner-1") == []
    store.wrote(job("a", 5))  # e.g. the reply of a delete call, late
    assert store.jobs("owner-1") == []


def test_objects_are_found_by_their_ingestion_uid() -> None:
    store = RunStore(
        indexed(job("a", 1, owner="one"), job("b", 2, owner="two")),
        indexed(job("c", 3, owner="one")),
    )
    assert [j["metadata"]["uid"] for j in store.jobs("one")] == ["a"]
    assert [p["metadata"]["uid"] for p in store.pods("one")] == ["c"]
    assert store.pods("two") == []


def ingestion(uid: str, version: int, phase: str) -> dict[str, Any]:
    meta = {"name": "sync", "namespace": "ns", "uid": uid, "resourceVersion": str(version)}
    return {"metadata": meta, "spec": {}, "status": {"phase": phase}}


def test_an_ingestion_status_never_goes_back_to_before_the_operators_write() -> None:
    store = IngestionStore()
    store.seen(ingestion("u1", 20, "Pending"))  # the response of the operator's patch
    store.seen(ingestion("u1", 19, "Invalid"))  # the watch event of an earlier write
    assert store.get("ns", "sync")["status"]["phase"] == "Pending"


def test_a_deleted_ingestion_is_forgotten_and_its_successor_kept() -> None:
    store = IngestionStore()
    store.seen(ingestion("u1", 20, "Succeeded"))
    store.gone(ingestion("u1", 21, "Succeeded"))
    store.seen(ingestion("u1", 20, "Succeeded"))
    assert store.get("ns", "sync") is None
    store.seen(ingestion("u2", 30, "Pending"))
    assert store.get("ns", "sync")["metadata"]["uid"] == "u2"
