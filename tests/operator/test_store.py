"""RunStore and IngestionStore only move forward: newer versions win, deletions stay; the
Reflector keeps a RunStore following the real API server."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client as k8s

from kingest.operator.job import ANNOTATION_INGESTION, LABEL_INGESTION_UID
from kingest.operator.rawapi import AsyncApi
from kingest.operator.store import IngestionStore, Reflector, RunStore, ingestion_of


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


def test_an_older_version_never_replaces_a_newer_one() -> None:
    store = RunStore()
    assert store.seen("jobs", job("a", 10, active=1))
    assert not store.seen("jobs", job("a", 9))  # a late event from before the write
    assert store.seen("jobs", job("a", 11, succeeded=1))
    assert store.jobs("owner-1")[0]["status"] == {"succeeded": 1}


def test_only_what_plan_reads_is_kept() -> None:
    store = RunStore()
    store.seen("jobs", job("a", 1))
    kept = store.jobs("owner-1")[0]
    assert kept["spec"] == {"backoffLimit": 2}
    assert "managedFields" not in kept["metadata"]
    assert ingestion_of(kept) == ("ns", "sync")


def test_a_deleted_object_does_not_come_back() -> None:
    store = RunStore()
    store.seen("jobs", job("a", 5))
    store.gone("jobs", job("a", 6))
    assert not store.seen("jobs", job("a", 5))  # e.g. the response of a delete call
    assert store.jobs("owner-1") == []


def test_objects_are_found_by_their_ingestion_uid() -> None:
    store = RunStore()
    store.seen("jobs", job("a", 1, owner="one"))
    store.seen("jobs", job("b", 2, owner="two"))
    store.seen("pods", job("c", 3, owner="one"))
    assert [j["metadata"]["uid"] for j in store.jobs("one")] == ["a"]
    assert [p["metadata"]["uid"] for p in store.pods("one")] == ["c"]
    assert store.pods("two") == []


def test_a_listing_drops_what_was_deleted_unseen_but_not_what_came_after_it() -> None:
    store = RunStore()
    store.expect("jobs", "ns")
    store.expect("pods", "ns")
    store.seen("jobs", job("deleted-while-not-watching", 3))
    store.seen("jobs", job("created-after-the-listing", 12))
    changed = store.replace("jobs", "ns", [job("listed", 8)], version="10")
    assert sorted(j["metadata"]["uid"] for j in store.jobs("owner-1")) == [
        "created-after-the-listing",
        "listed",
    ]
    assert sorted(j["metadata"]["uid"] for j in changed) == ["deleted-while-not-watching", "listed"]
    assert not store.synced()  # the Pods are not listed yet
    store.replace("pods", "ns", [], version="10")
    assert store.synced()


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


def suspended_job(name: str, owner: str | None, ingestion: str) -> dict[str, Any]:
    """A Job that starts no Pod, labelled as the runs of Ingestion `ingestion` (uid `owner`)."""
    labels = {LABEL_INGESTION_UID: owner} if owner else {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {ANNOTATION_INGESTION: ingestion},
        },
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "runner", "image": "busybox"}],
                }
            },
        },
    }


def test_the_reflector_lists_then_follows_the_labelled_jobs(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs"

    async def scenario() -> tuple[list[str], list[str], list[tuple[str, str]]]:
        api = AsyncApi(kube_api.configuration, connections=4)
        store = RunStore()
        changed: list[tuple[str, str]] = []
        reflector = Reflector(api, "jobs", namespace, store, lambda *key: changed.append(key))
        try:
            await api.create(path, suspended_job("listed", "uid-1", "sync"))
            reflector.start()
            await asyncio.wait_for(store.wait_synced(), 30)
            listed = [job["metadata"]["name"] for job in store.jobs("uid-1")]
            await api.create(path, suspended_job("watched", "uid-1", "sync"))
            await api.create(path, suspended_job("unlabelled", None, "other"))
            await api.delete(f"{path}/listed", propagation="Background")

            async def settled() -> list[str]:
                while True:
                    names = sorted(job["metadata"]["name"] for job in store.jobs("uid-1"))
                    if names == ["watched"]:
                        return names
                    await asyncio.sleep(0.05)

            followed = await asyncio.wait_for(settled(), 30)
            return listed, followed, changed
        finally:
            await reflector.stop()
            await api.close()

    listed, followed, changed = asyncio.run(scenario())
    assert listed == ["listed"]
    assert followed == ["watched"]
    # Each change after the first listing queued the Ingestion; the unlabelled Job none.
    assert changed and set(changed) == {(namespace, "sync")}
