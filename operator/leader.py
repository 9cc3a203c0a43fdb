"""Leader election on a `coordination.k8s.io/v1` Lease: only the holder acts.

The decision is pure (`decide`: Lease record + identity + now -> what to do); the loops that
read and write the Lease are thin coroutines on kopf's event loop: the startup handler
(`kingest.operator.handlers.start`) awaits `wait_to_lead`, so kopf watches nothing and serves
no webhook before this replica holds the Lease, then `keep_leading` renews it from one asyncio
task. The Lease calls themselves run on a thread of their own (`asyncio.to_thread`), never
queued behind the reconciles' API calls.

kopf's own peering is not an election: peers of equal priority all keep running (kopf only
warns), so it cannot promise that one replica acts. Hence this Lease, as client-go's
leaderelection does it. Expiry is judged on the Lease's own `renewTime` plus its
`leaseDurationSeconds` against this replica's wall clock, so replicas' clocks are assumed to
agree to well within the lease duration (as on any NTP-synced cluster).

A leader that cannot renew before its lease would expire exits the process at once: by then
a standby may already act, and a restarted Pod comes back as a standby.

Each replica labels its own Pod `kingest.io/role=leader` or `standby` (`label_role`): the
chart's webhook Service selects the leader by it, since only the leader runs kopf and so only
it serves the admission webhook (as CloudNativePG's `-rw` Service selects its primary). A
replica labels itself standby before it waits for the Lease (a restarted container may still
carry its previous `leader` label) and leader once it holds it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

log = logging.getLogger("kingest.operator.leader")

# The label on each replica's own Pod: `leader` or `standby`.
ROLE_LABEL = "kingest.io/role"


class Action(enum.Enum):
    """What a replica does after looking at the Lease."""

    CREATE = "create"  # no Lease yet: create it with us as holder
    ACQUIRE = "acquire"  # held by nobody, or its holder let it expire: take it over
    RENEW = "renew"  # we hold it: move renewTime forward
    STANDBY = "standby"  # someone else holds a live lease: wait


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease the election reads."""

    holder: str | None
    renew_time: dt.datetime | None
    duration_s: int | None
    transitions: int = 0


def decide(lease: LeaseRecord | None, identity: str, now: dt.datetime) -> Action:
    """The action for `identity` at `now` given the current Lease (None: it does not exist)."""
    if lease is None:
        return Action.CREATE
    if lease.holder == identity:
        return Action.RENEW
    if not lease.holder or lease.renew_time is None or not lease.duration_s:
        return Action.ACQUIRE
    expires = lease.renew_time + dt.timedelta(seconds=lease.duration_s)
    return Action.ACQUIRE if now >= expires else Action.STANDBY


def lease_body(
    name: str, identity: str, now: dt.datetime, duration_s: int, previous: LeaseRecord | None
) -> dict[str, Any]:
    """The Lease manifest naming `identity` as holder from `now` (a renewal keeps acquireTime)."""
    renewing = previous is not None and previous.holder == identity
    transitions = 0 if previous is None else previous.transitions + (0 if renewing else 1)
    spec: dict[str, Any] = {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration_s,
        "renewTime": _micro_time(now),
        "leaseTransitions": transitions,
    }
    if not renewing:
        spec["acquireTime"] = _micro_time(now)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": spec,
    }


def _micro_time(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: k8s.V1Lease) -> LeaseRecord:
    spec = lease.spec
    return LeaseRecord(
        holder=spec.holder_identity,
        renew_time=spec.renew_time,
        duration_s=spec.lease_duration_seconds,
        transitions=spec.lease_transitions or 0,
    )


class LeaseElection:
    """One replica's view of the election on Lease `namespace/name`."""

    def __init__(
        self, api: k8s.ApiClient, namespace: str, name: str, identity: str, duration_s: int
    ) -> None:
        self.leases = k8s.CoordinationV1Api(api)
        self.pods = k8s.CoreV1Api(api)
        # The replica's Pod is named `identity` and lives in the Lease's namespace (main.py
        # takes both from POD_NAME and POD_NAMESPACE).
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration_s = duration_s
        self._renewing: asyncio.Task[None] | None = None

    def try_to_lead(self) -> bool:
        """Create, take over or renew the Lease; True when this replica holds it afterwards.

        A 409 (another replica wrote it first) means we do not hold it; other API errors
        propagate, so the caller can say which permission or object is wrong.
        """
        try:
            current = self.leases.read_namespaced_lease(self.name, self.namespace)
        except k8s.ApiException as error:
            if error.status != 404:
                raise
            current = None
        record = None if current is None else _record(current)
        now = dt.datetime.now(dt.UTC)
        action = decide(record, self.identity, now)
        if action is Action.STANDBY:
            return False
        body = lease_body(self.name, self.identity, now, self.duration_s, record)
        try:
            if action is Action.CREATE:
                self.leases.create_namespaced_lease(self.namespace, body)
            else:
                # resourceVersion makes the write conditional: two standbys never both win.
                body["metadata"]["resourceVersion"] = current.metadata.resource_version
                self.leases.replace_namespaced_lease(self.name, self.namespace, body)
        except k8s.ApiException as error:
            if error.status == 409:
                return False
            raise
        if action is not Action.RENEW:
            log.info(
                "%s leads now (Lease %s/%s, previous holder %s)",
                self.identity,
                self.namespace,
                self.name,
                record.holder if record else None,
            )
        return True

    def label_role(self, role: str) -> None:
        """Label this replica's Pod `kingest.io/role=<role>` (`leader` or `standby`).

        Best effort: leading does not depend on it. Without it the webhook Service has no
        leader to send requests to, so the webhook is not asked (and, with failurePolicy
        Ignore, changes are accepted and checked by the reconcile): each failure is logged as
        a warning naming the missing right.
        """
        try:
            self.pods.patch_namespaced_pod(
                self.identity,
                self.namespace,
                {"metadata": {"labels": {ROLE_LABEL: role}}},
                _content_type="application/merge-patch+json",
            )
        except k8s.ApiException as error:
            log.warning(
                "could not label Pod %s/%s %s=%s (%s %s): the webhook Service sends requests "
                "to the Pod labelled %s=leader; the operator needs patch on pods in %s",
                self.namespace,
                self.identity,
                ROLE_LABEL,
                role,
                error.status,
                error.reason,
                ROLE_LABEL,
                self.namespace,
            )

    async def release(self) -> None:
        """Hand the Lease over now (graceful shutdown) instead of letting it expire."""
        if self._renewing is not None:  # must not take it back meanwhile
            self._renewing.cancel()
        try:
            await asyncio.to_thread(self._release)
        except k8s.ApiException as error:
            log.warning(
                "could not release Lease %s/%s: %s", self.namespace, self.name, error.reason
            )
        await asyncio.to_thread(self.label_role, "standby")

    def _release(self) -> None:
        current = self.leases.read_namespaced_lease(self.name, self.namespace)
        if current.spec.holder_identity != self.identity:
            return
        current.spec.holder_identity = None
        current.spec.renew_time = None
        self.leases.replace_namespaced_lease(self.name, self.namespace, current)

    async def wait_to_lead(self) -> None:
        """Return (having stood by) once this replica holds the Lease."""
        interval = max(self.duration_s / 5, 0.2)
        logged = False
        await asyncio.to_thread(self.label_role, "standby")
        while True:
            try:
                if await asyncio.to_thread(self.try_to_lead):
                    await asyncio.to_thread(self.label_role, "leader")
                    return
            except k8s.ApiException as error:
                log.error(
                    "Lease %s/%s: %s %s (the operator needs get, create, update on leases)",
                    self.namespace,
                    self.name,
                    error.status,
                    error.reason,
                )
            if not logged:
                log.info("%s stands by: another replica holds the Lease", self.identity)
                logged = True
            await asyncio.sleep(interval)

    def keep_leading(self) -> None:
        """Renew from a task every third of the duration; exit the process on losing it.

        Exiting (not just stopping kopf) is deliberate: nothing half-stopped keeps acting after
        the lease could have passed to a standby; Kubernetes restarts the Pod as a standby.
        """
        if self._renewing is None or self._renewing.done():  # a retried startup: one task
            self._renewing = asyncio.create_task(self._renew(), name="kingest-lease-renewal")

    async def _renew(self) -> None:
        last_renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.duration_s / 3)
            try:
                held = await asyncio.wait_for(
                    asyncio.to_thread(self.try_to_lead), self.duration_s / 3
                )
            except Exception as error:
                log.warning("Lease renewal failed: %s", error or type(error).__name__)
                held = None
            if held:
                last_renewed = time.monotonic()
            elif held is False:
                _exit(f"{self.identity} lost the Lease to another replica")
            # Retry until just before the lease would expire, then give up acting.
            if time.monotonic() - last_renewed > self.duration_s * 2 / 3:
                _exit(f"{self.identity} could not renew the Lease in time")


def _exit(reason: str) -> None:
    log.error("%s: stopping at once so that only the leader acts", reason)
    logging.shutdown()
    os._exit(1)
