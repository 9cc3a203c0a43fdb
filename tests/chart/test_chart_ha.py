"""Two replicas: the active operator is killed mid-run, and no run is lost or duplicated.

The chart's Deployment runs two operator Pods on the node (same ServiceAccount, each its own
POD_NAME as Lease identity). The active one is SIGKILLed on the node and its Pod removed at
once, as when a node dies, while a run's commit marker is held up on the S3 server; a new run
is requested while it is down. The ReplicaSet starts a replacement Pod, so the Lease may pass
to the standby or to the replacement: either is a takeover, the killed replica never acts again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from kingest.operator import rbac
from kingest.operator.leader import ROLE_LABEL
from kingest.operator.spec import GROUP, PLURAL, VERSION
from tests.chart.conftest import ChartReplica, Release, operator_values
from tests.chart.test_chart_rbac import ROWS, permission_errors, seed_users_to_s3
from tests.chart.test_chart_webhook import BAD, kubectl_apply, serving_addresses, wait_for_webhook
from tests.platform.cluster import Cluster
from tests.platform.s3 import S3Server

pytestmark = pytest.mark.cluster

RUN_REQUESTED = "kingest.io/run-requested"
# The bound on a takeover: how long a dead leader's lease may keep the standby waiting.
LEASE_SECONDS = 5
TAKEOVER_BOUND = LEASE_SECONDS * 3


def s3_loads(s3: S3Server, bucket: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix="records/_dlt_loads/")
    return [
        json.loads(s3.client().get_object(Bucket=bucket, Key=o["Key"])["Body"].read())["load_id"]
        for o in listing.get("Contents", [])
    ]


def wait_status(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float,
) -> dict[str, Any]:
    custom = k8s.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        status = obj.get("status") or {}
        if until(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{name}: not reached in {timeout} s; status={status}")


def lease_holder(api: k8s.ApiClient, release: Release) -> str | None:
    """Who holds the replicas' Lease (None: nobody, or no Lease yet)."""
    try:
        lease = k8s.CoordinationV1Api(api).read_namespaced_lease(
            release.fullname, release.namespace
        )
    except k8s.ApiException as error:
        if error.status == 404:
            return None
        raise
    return lease.spec.holder_identity


@pytest.fixture
def two_replicas(
    release: Release, start_operator: Callable[..., list[ChartReplica]]
) -> dict[str, ChartReplica]:
    release.install(operator_values(leaderElection={"leaseDurationSeconds": LEASE_SECONDS}))
    replicas = {replica.name: replica for replica in start_operator(2)}
    # Both have looked at the Lease: one holds it, the other stands by.
    deadline = time.monotonic() + 30
    while lease_holder(release.api, release) not in replicas:
        assert time.monotonic() < deadline, "no replica took the Lease"
        time.sleep(0.2)
    return replicas


def test_killing_the_active_replica_mid_run_loses_and_duplicates_nothing(
    kube: Cluster,
    kube_api: k8s.ApiClient,
    release: Release,
    two_replicas: dict[str, ChartReplica],
    apps_namespace: str,
    s3_server: S3Server,
    bucket: str,
) -> None:
    # The first run's commit marker is held up, so the run is in flight when the kill lands.
    s3_server.faults.add(
        action="delay", method="PUT", path_regex=r".*/_dlt_loads/.*", delay_s=4.0, times=1
    )
    name = seed_users_to_s3(kube, apps_namespace, s3_server, bucket)
    wait_status(kube_api, apps_namespace, name, lambda s: s.get("phase") == "Running", 30)

    active = lease_holder(kube_api, release)
    assert active in two_replicas
    two_replicas[active].kill()
    killed_at = time.monotonic()

    custom = k8s.CustomObjectsApi(kube_api)
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        apps_namespace,
        PLURAL,
        name,
        {"metadata": {"annotations": {RUN_REQUESTED: "after-kill"}}},
    )
    status = wait_status(
        kube_api,
        apps_namespace,
        name,
        lambda s: s.get("handledRunRequest") == "after-kill" and s.get("phase") == "Succeeded",
        timeout=TAKEOVER_BOUND + 45,
    )
    took_over_in = time.monotonic() - killed_at

    # Exactly two runs: the one in flight at the kill, and the requested one; each one Job,
    # one load in S3, one entry in the status history.
    jobs = k8s.BatchV1Api(kube_api).list_namespaced_job(apps_namespace).items
    assert len(jobs) == 2, [j.metadata.name for j in jobs]
    assert all(j.status.succeeded == 1 for j in jobs)
    loads = s3_loads(s3_server, bucket)
    assert len(loads) == 2 and status["lastLoadId"] in loads
    assert [r["trigger"] for r in status["runs"]] == ["Requested", "Generation"]
    assert {r["rows"] for r in status["runs"]} == {ROWS}
    assert took_over_in < TAKEOVER_BOUND + 45
    survivor = next(r for n, r in two_replicas.items() if n != active)
    assert not permission_errors(survivor.logs(), apps_namespace), survivor.logs()[-3000:]


def test_only_the_leader_acts_and_the_standby_takes_over_within_the_lease(
    kube: Cluster,
    kube_api: k8s.ApiClient,
    release: Release,
    two_replicas: dict[str, ChartReplica],
    apps_namespace: str,
    s3_server: S3Server,
    bucket: str,
) -> None:
    name = seed_users_to_s3(kube, apps_namespace, s3_server, bucket)
    wait_status(kube_api, apps_namespace, name, lambda s: s.get("phase") == "Succeeded", 60)
    leader = lease_holder(kube_api, release)
    assert leader in two_replicas
    standby = next(n for n in two_replicas if n != leader)
    assert "RunCreated" in two_replicas[leader].logs()
    assert "RunCreated" not in two_replicas[standby].logs()
    # Both replicas answer scrapes; only the acting one reports Ingestions.
    assert "kingest_operator_leader 1" in two_replicas[leader].metrics()
    assert f'name="{name}"' in two_replicas[leader].metrics()
    standby_metrics = two_replicas[standby].metrics()
    assert "kingest_operator_leader 0" in standby_metrics
    assert f'name="{name}"' not in standby_metrics

    two_replicas[leader].kill()
    killed_at = time.monotonic()
    deadline = killed_at + TAKEOVER_BOUND
    while lease_holder(kube_api, release) in (leader, None):
        assert time.monotonic() < deadline, f"no takeover in {TAKEOVER_BOUND} s"
        time.sleep(0.2)
    successor = ChartReplica(release, lease_holder(kube_api, release) or "")
    k8s.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        apps_namespace,
        PLURAL,
        name,
        {"metadata": {"annotations": {RUN_REQUESTED: "now"}}},
    )
    wait_status(
        kube_api,
        apps_namespace,
        name,
        lambda s: s.get("handledRunRequest") == "now" and s.get("phase") == "Succeeded",
        timeout=60,
    )
    assert "RunCreated" in successor.logs()
    assert "kingest_operator_leader 1" in successor.metrics()


def roles(release: Release) -> dict[str, str | None]:
    """Each operator Pod's `kingest.io/role` label (None: none)."""
    pods = k8s.CoreV1Api(release.api).list_namespaced_pod(
        release.namespace, label_selector="app.kubernetes.io/name=kingest"
    )
    return {p.metadata.name: (p.metadata.labels or {}).get(ROLE_LABEL) for p in pods.items}


def webhook_served_by(release: Release, replica: ChartReplica, timeout: float) -> None:
    """Wait until the webhook Service's one ready address is `replica`'s Pod."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serving_addresses(release) == [replica.pod()["status"].get("podIP")]:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"the webhook Service serves {serving_addresses(release)}, not only {replica.name} "
        f"(roles: {roles(release)})"
    )


def test_the_webhook_is_served_by_the_leader_alone_and_follows_a_takeover(
    kube: Cluster,
    kube_api: k8s.ApiClient,
    release: Release,
    two_replicas: dict[str, ChartReplica],
    apps_namespace: str,
) -> None:
    # Only the leader runs kopf, so only it serves the webhook; a request reaching the standby
    # would be refused and, with failurePolicy Ignore, the bad spec accepted.
    leader = lease_holder(kube_api, release)
    assert leader in two_replicas
    standby = next(n for n in two_replicas if n != leader)
    webhook_served_by(release, two_replicas[leader], timeout=30)
    assert roles(release) == {leader: "leader", standby: "standby"}
    wait_for_webhook(kube, apps_namespace, two_replicas[leader])
    # Both replicas are Ready: had the Service both behind it, about half of these would pass.
    for _ in range(3):
        for spec, message in BAD:
            result = kubectl_apply(kube, apps_namespace, "bad", spec)
            assert result.returncode != 0, f"accepted: {spec}"
            assert message in result.stderr

    two_replicas[leader].kill()
    deadline = time.monotonic() + TAKEOVER_BOUND
    while lease_holder(kube_api, release) in (leader, None):
        assert time.monotonic() < deadline, f"no takeover in {TAKEOVER_BOUND} s"
        time.sleep(0.2)
    successor = ChartReplica(release, lease_holder(kube_api, release) or "")
    webhook_served_by(release, successor, timeout=30)
    # The replacement Pod may not have labelled itself yet; no Pod but the successor leads.
    assert [name for name, role in roles(release).items() if role == "leader"] == [successor.name]
    wait_for_webhook(kube, apps_namespace, successor)
    spec, message = BAD[0]
    result = kubectl_apply(kube, apps_namespace, "bad", spec)
    assert result.returncode != 0 and message in result.stderr


@pytest.mark.parametrize("verb", rbac.leader_election_rules()[0]["verbs"])
def test_without_any_one_lease_verb_the_operator_stops_acting(
    kube: Cluster,
    kube_api: k8s.ApiClient,
    release: Release,
    start_operator: Callable[..., list[ChartReplica]],
    apps_namespace: str,
    s3_server: S3Server,
    bucket: str,
    verb: str,
) -> None:
    # The RBAC mutation test of the Lease Role (tests/chart/test_chart_rbac.py covers the
    # ClusterRole's): without get or create no replica ever acts; without update the leader
    # cannot renew and exits before its Lease runs out.
    release.install(operator_values(leaderElection={"leaseDurationSeconds": LEASE_SECONDS}))
    authz = k8s.RbacAuthorizationV1Api(kube_api)
    role_name = f"{release.fullname}-leader-election"
    role = authz.read_namespaced_role(role_name, release.namespace)
    assert kube_api.sanitize_for_serialization(role.rules) == rbac.leader_election_rules()
    role.rules[0].verbs = [v for v in role.rules[0].verbs if v != verb]
    authz.replace_namespaced_role(role_name, release.namespace, role)
    time.sleep(1)  # the authorizer's cache of RBAC objects follows within a moment
    # Not waiting for Ready: an operator that cannot take the Lease may never be ready.
    (operator,) = start_operator(ready=False)
    if verb == "update":
        started = time.monotonic()
        assert operator.exit_code(timeout=LEASE_SECONDS * 3) == 1
        assert time.monotonic() - started < LEASE_SECONDS * 3
        assert "could not renew the Lease in time" in operator.logs()
        return
    seed_users_to_s3(kube, apps_namespace, s3_server, bucket)
    time.sleep(LEASE_SECONDS * 3)
    assert k8s.BatchV1Api(kube_api).list_namespaced_job(apps_namespace).items == []
    assert "403" in operator.logs() and "get, create, update on leases" in operator.logs()
