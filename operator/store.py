"""Every Ingestion's Jobs and Pods as last seen, kept by list-and-watch, so a reconcile lists
nothing.

Listing an Ingestion's Jobs and Pods by label on every reconcile made the API server read and
filter every Job and Pod of the namespace each time (about 1 s per list with 500 Ingestions):
quadratic in the number of Ingestions. Instead one `Reflector` per kind (and watched
namespace) lists once, then watches, and keeps a `RunStore` that reconciles read.

Not kopf's watch (`@kopf.index` / `@kopf.on.event` on the Jobs and Pods): kopf handles every
event of every Job and Pod on the operator's event loop, about 1 ms each, and with 1,000 runs
starting on one slot those events delayed the Job creations past the slot target (the figures
are in `operator/README.md`). Here one task per watch reads the stream (`rawapi.AsyncApi`,
aiohttp on the event loop) and keeps only what `plan` reads (`slim`).

The store only moves forward: an object is replaced only by a newer resourceVersion, and the
uid of a deleted object is remembered, so neither a late watch event nor the response of the
operator's own write (`RunStore.seen` after creating or deleting a Job: what it just did is
visible to the next reconcile at once) can bring back an older state. A reconcile that runs on
a store a moment behind the API server is safe: the Job it would create again already exists
(409, adopted), and the watch event that brings the store up to date reconciles again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s

from kingest.operator import tasks
from kingest.operator.job import ANNOTATION_INGESTION, LABEL_INGESTION_UID
from kingest.operator.rawapi import AsyncApi

log = logging.getLogger("kingest.operator.store")
Body = dict[str, Any]
_REMEMBERED_DELETIONS = 10_000
_WATCH_TIMEOUT_S = 300
_RETRY_S = 2.0
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


def slim(body: Body) -> Body:
    """The parts of a Job or Pod that `plan` and `run_status` read (a Pod's spec is large)."""
    meta = body.get("metadata") or {}
    kept: Body = {
        "metadata": {k: meta[k] for k in _METADATA if k in meta},
        "status": body.get("status") or {},
    }
    if "backoffLimit" in (body.get("spec") or {}):
        kept["spec"] = {"backoffLimit": body["spec"]["backoffLimit"]}
    return kept


def _version(body: Body) -> int:
    try:
        return int(body["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


class RunStore:
    """Jobs and Pods labelled with an Ingestion's uid, by kind ("jobs", "pods") and uid.

    Used on the event loop only."""

    def __init__(self, kinds: tuple[str, ...] = ("jobs", "pods")) -> None:
        self._objects: dict[str, dict[str, Body]] = {kind: {} for kind in kinds}
        self._owned: dict[str, dict[str, set[str]]] = {kind: {} for kind in kinds}
        self._deleted: OrderedDict[str, None] = OrderedDict()
        self._scopes: dict[str, set[str | None]] = {kind: set() for kind in kinds}
        self._expected: dict[str, set[str | None]] = {kind: set() for kind in kinds}
        self._synced = asyncio.Event()

    def expect(self, kind: str, namespace: str | None) -> None:
        """Declare a scope (a namespace, None for all) that `wait_synced` waits to be listed."""
        self._expected[kind].add(namespace)
        self._synced.clear()

    def synced(self) -> bool:
        """Whether every expected scope has been listed once."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        """Return once every expected scope has been listed once."""
        await self._synced.wait()

    def jobs(self, ingestion_uid: str) -> list[Body]:
        """The Jobs of an Ingestion (by its uid label)."""
        return self._of("jobs", ingestion_uid)

    def pods(self, ingestion_uid: str) -> list[Body]:
        """The Pods of an Ingestion's Jobs (by its uid label)."""
        return self._of("pods", ingestion_uid)

    def _of(self, kind: str, ingestion_uid: str) -> list[Body]:
        objects = self._objects[kind]
        return [objects[uid] for uid in self._owned[kind].get(ingestion_uid, ())]

    def seen(self, kind: str, body: Body) -> bool:
        """Keep `body` unless the store holds a newer version or saw it deleted; True if kept."""
        kept = slim(body)
        uid = kept["metadata"].get("uid")
        owner = (kept["metadata"].get("labels") or {}).get(LABEL_INGESTION_UID)
        if not uid or not owner:
            return False
        current = self._objects[kind].get(uid)
        if uid in self._deleted or (current is not None and _version(current) >= _version(kept)):
            return False
        self._objects[kind][uid] = kept
        self._owned[kind].setdefault(owner, set()).add(uid)
        return True

    def gone(self, kind: str, body: Body) -> None:
        """Forget a deleted object, for good."""
        self._remove(kind, (body.get("metadata") or {}).get("uid") or "")

    def _remove(self, kind: str, uid: str) -> Body | None:
        self._deleted[uid] = None
        if len(self._deleted) > _REMEMBERED_DELETIONS:
            self._deleted.popitem(last=False)
        current = self._objects[kind].pop(uid, None)
        if current is not None:
            owner = current["metadata"]["labels"][LABEL_INGESTION_UID]
            owned = self._owned[kind].get(owner, set())
            owned.discard(uid)
            if not owned:
                self._owned[kind].pop(owner, None)
        return current

    def replace(
        self, kind: str, namespace: str | None, items: list[Body], version: str
    ) -> list[Body]:
        """A fresh listing of `namespace` (None: all) at resourceVersion `version`: what it
        lacks was deleted meanwhile (unless the operator wrote it after the listing).

        Returns the objects that changed, appeared or disappeared.
        """
        listed = {item["metadata"]["uid"] for item in items}
        listed_at = _version({"metadata": {"resourceVersion": version}})
        stale = [
            uid
            for uid, body in self._objects[kind].items()
            if uid not in listed
            and _version(body) <= listed_at
            and (namespace is None or body["metadata"].get("namespace") == namespace)
        ]
        removed = [body for uid in stale if (body := self._remove(kind, uid)) is not None]
        changed = [item for item in items if self.seen(kind, item)]
        self._scopes[kind].add(namespace)
        if all(self._expected[k] <= self._scopes[k] for k in self._expected):
            self._synced.set()
        return removed + changed


class IngestionStore:
    """Ingestions as last seen on kopf's watch or in the operator's own status writes.

    A reconcile reads the Ingestion from here rather than from the API server: the status it
    holds is never older than the operator's last write (newer resourceVersions win), and a
    spec changed meanwhile arrives as an event that reconciles again. Used on the event loop
    only.
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


def ingestion_of(body: Body) -> tuple[str, str] | None:
    """(namespace, name) of the Ingestion a Job or Pod runs for."""
    meta = body.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(ANNOTATION_INGESTION)
    return (meta["namespace"], name) if name and meta.get("namespace") else None


class Reflector:
    """Lists, then watches, the Jobs or Pods of Ingestions in one namespace (None: all), into
    a `RunStore`, and calls `changed(namespace, name)` for the Ingestion of every change.

    One asyncio task, reading the stream through `rawapi.AsyncApi` on the event loop that
    also updates the store: nothing here locks or hands over between threads.
    """

    def __init__(
        self,
        api: AsyncApi,
        kind: str,
        namespace: str | None,
        store: RunStore,
        changed: Callable[[str, str], None],
    ) -> None:
        self._api, self.kind, self.namespace = api, kind, namespace
        group = "/apis/batch/v1" if kind == "jobs" else "/api/v1"
        scope = f"/namespaces/{namespace}" if namespace is not None else ""
        self._path = f"{group}{scope}/{kind}"
        self._store, self._changed = store, changed
        self._task: asyncio.Task[None] | None = None
        store.expect(kind, namespace)

    def start(self) -> None:
        """List and watch on the running loop, until `stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"kingest-watch-{self.kind}")

    async def stop(self) -> None:
        """Stop watching (the request under way is cancelled)."""
        await tasks.cancel([self._task])
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                version: str | None = await self._relist()
                while version is not None:
                    version = await self._watch(version)
            except Exception as exc:
                detail = (
                    f"{exc.status} {exc.reason}" if isinstance(exc, k8s.ApiException) else str(exc)
                )
                log.warning("watching %s failed (%s); listing again", self.kind, detail)
                await asyncio.sleep(_RETRY_S)

    async def _relist(self) -> str:
        listing = await self._api.get(self._path, {"labelSelector": LABEL_INGESTION_UID})
        version = listing["metadata"]["resourceVersion"]
        synced = self._store.synced()
        items = [slim(item) for item in listing["items"]]
        for body in self._store.replace(self.kind, self.namespace, items, version):
            # At start-up every Ingestion is reconciled anyway (kopf lists them).
            if synced:
                self._notify(body)
        return version

    async def _watch(self, version: str) -> str | None:
        """Follow changes from `version`; the version to go on from, None to list again."""
        params = {
            "labelSelector": LABEL_INGESTION_UID,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
        }
        # Closed on leaving, so an ERROR's early return ends the request at once.
        async with contextlib.aclosing(
            self._api.watch(self._path, params, _WATCH_TIMEOUT_S)
        ) as events:
            async for event in events:
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    # 410 Gone: the version is too old to watch from.
                    log.info("the %s watch ended: %s", self.kind, body.get("message"))
                    return None
                version = body.get("metadata", {}).get("resourceVersion") or version
                if kind == "DELETED":
                    self._store.gone(self.kind, body)
                    self._notify(body)
                elif kind in ("ADDED", "MODIFIED") and self._store.seen(self.kind, body):
                    self._notify(body)
        return version

    def _notify(self, body: Body) -> None:
        ingestion = ingestion_of(body)
        if ingestion is not None:
            self._changed(*ingestion)
