"""Every Ingestion's Jobs and Pods as last seen, so a reconcile lists nothing.

Listing an Ingestion's Jobs and Pods by label on every reconcile made the API server read and
filter every Job and Pod of the namespace each time (about 1 s per list with 500 Ingestions):
quadratic in the number of Ingestions. Instead kopf watches them (`handlers.run_jobs` /
`run_pods`: `@kopf.index` by the Ingestion's uid label, server-side label selector), and
kopf holds every handler back until both indexes hold their first listing, so no reconcile
sees an Ingestion without its runs and starts one again.

`RunStore` reads those indexes and overlays the operator's own writes: the Job it just created
(or is deleting) is visible to the next reconcile at once, even before the watch brings it.
An overlaid Job goes once the watch shows that version or a newer one, or its deletion; the
uid of a deleted Job is remembered, so the response of a late write never brings it back.

Runs on kopf's event loop only (the handlers and the reconciles), so nothing here locks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from kingest.operator.job import ANNOTATION_INGESTION, LABEL_INGESTION_UID

Body = dict[str, Any]
_REMEMBERED_DELETIONS = 10_000
_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "labels",
    "annotations",
    "creationTimestamp",
    "deletionTimestamp",
)


def slim(body: Mapping[str, Any]) -> Body:
    """The parts of a Job or Pod that `plan` and `run_status` read (a Pod's spec is large)."""
    meta = body.get("metadata") or {}
    kept: Body = {
        "metadata": {k: meta[k] for k in _METADATA if k in meta},
        "status": dict(body.get("status") or {}),
    }
    if "backoffLimit" in (body.get("spec") or {}):
        kept["spec"] = {"backoffLimit": body["spec"]["backoffLimit"]}
    return kept


def owner_uid(body: Mapping[str, Any]) -> str | None:
    """The uid of the Ingestion a Job or Pod runs for (its label)."""
    return ((body.get("metadata") or {}).get("labels") or {}).get(LABEL_INGESTION_UID)


def ingestion_of(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the Ingestion a Job or Pod runs for."""
    meta = body.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(ANNOTATION_INGESTION)
    return (meta["namespace"], name) if name and meta.get("namespace") else None


def _version(body: Mapping[str, Any]) -> int:
    try:
        return int(body["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


class RunStore:
    """The Jobs and Pods of each Ingestion (by its uid): kopf's indexes, overlaid with the
    Jobs the operator wrote and the watch has not shown yet."""

    def __init__(
        self,
        jobs: Mapping[str, Iterable[Body]],
        pods: Mapping[str, Iterable[Body]],
    ) -> None:
        self._jobs, self._pods = jobs, pods
        self._written: dict[str, dict[str, Body]] = {}  # Ingestion uid -> Job uid -> Job
        self._deleted: OrderedDict[str, None] = OrderedDict()

    def jobs(self, ingestion_uid: str) -> list[Body]:
        """The Jobs of an Ingestion, the newest version of each."""
        found = {job["metadata"]["uid"]: job for job in self._jobs.get(ingestion_uid, ())}
        for uid, written in self._written.get(ingestion_uid, {}).items():
            if uid not in found or _version(found[uid]) < _version(written):
                found[uid] = written
        return list(found.values())

    def pods(self, ingestion_uid: str) -> list[Body]:
        """The Pods of an Ingestion's Jobs."""
        return list(self._pods.get(ingestion_uid, ()))

    def wrote(self, job: Body) -> None:
        """A Job as the API server answered the operator's create or delete."""
        uid, owner = job["metadata"].get("uid"), owner_uid(job)
        if uid and owner and uid not in self._deleted:
            self._written.setdefault(owner, {})[uid] = slim(job)

    def watched(self, event_type: str | None, job: Mapping[str, Any]) -> None:
        """A Job as the watch shows it: an overlaid version it caught up with goes."""
        uid, owner = job["metadata"].get("uid"), owner_uid(job)
        if not uid or not owner:
            return
        if event_type == "DELETED":
            self._deleted[uid] = None
            if len(self._deleted) > _REMEMBERED_DELETIONS:
                self._deleted.popitem(last=False)
        written = self._written.get(owner, {})
        if uid in written and (event_type == "DELETED" or _version(written[uid]) <= _version(job)):
            del written[uid]
            if not written:
                del self._written[owner]


class IngestionStore:
    """Ingestions as last seen on kopf's watch or in the operator's own status writes.

    A reconcile reads the Ingestion from here rather than from the API server: the status it
    holds is never older than the operator's last write (newer resourceVersions win), and a
    spec changed meanwhile arrives as an event that reconciles again.
    """

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], Body] = {}
        self._deleted: OrderedDict[str, None] = OrderedDict()

    def get(self, namespace: str, name: str) -> Body | None:
        """The Ingestion, or None if it was never seen (or is deleted)."""
        return self._objects.get((namespace, name))

    def seen(self, body: Body) -> None:
        """Keep `body` unless a newer version of it is kept, or it was deleted."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        # managedFields grow with every write and the operator never reads them.
        kept = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        current = self._objects.get(key)
        # resourceVersions are ordered across objects too: an Ingestion re-created under
        # the same name is newer than anything of its predecessor.
        if meta.get("uid") in self._deleted or (
            current is not None and _version(current) >= _version(kept)
        ):
            return
        self._objects[key] = kept

    def gone(self, body: Body) -> None:
        """Forget a deleted Ingestion, for good."""
        meta = body["metadata"]
        self._deleted[meta.get("uid") or ""] = None
        if len(self._deleted) > _REMEMBERED_DELETIONS:
            self._deleted.popitem(last=False)
        current = self._objects.get((meta["namespace"], meta["name"]))
        if current is not None and current["metadata"].get("uid") == meta.get("uid"):
            del self._objects[(meta["namespace"], meta["name"])]
