"""The chart's RBAC is enough and no more: the operator, run as the chart's ServiceAccount
with the chart's arguments, reconciles an Ingestion end to end; without any one of its
ClusterRole's rules, that same run goes wrong in a way a test sees.

The API server enforces RBAC on every request the operator makes (a bound token of the
chart's ServiceAccount), and OwnerReferencesPermissionEnforcement is on (as on OpenShift), so
the rule on `ingestions/finalizers` that lets Jobs block their owner's deletion is exercised
too. A permission error anywhere in the operator's log fails the run, not only a stuck status.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from kubernetes import client as k8s

from kingest.operator import rbac
from kingest.operator.spec import GROUP, PLURAL, VERSION
from tests.chart.conftest import CHART, ChartReplica, Release, operator_values
from tests.platform.cluster import Cluster
from tests.platform.s3 import S3Server

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# A 403 status, not the milliseconds of a log line's time (`00:18:44,403 INFO ...`).
PERMISSION_ERROR = re.compile(r"(?<![,.])\b403\b|forbidden|not enough permissions", re.IGNORECASE)
# Test namespaces (the platform's `t-…`, ours `a-…`); other tests' namespaces may still be
# terminating while an operator watching all namespaces looks at them.
TEST_NAMESPACE = re.compile(r"\b[at]-[0-9a-f]{10}\b")


def permission_errors(log: str, namespace: str) -> list[str]:
    """Log lines where the operator was denied something, other tests' namespaces aside."""
    denied = []
    for line in log.splitlines():
        if not PERMISSION_ERROR.search(line) or "being terminated" in line:
            continue
        # The operator's own identity names the release namespace: not what was asked for.
        asked = re.sub(r"system:serviceaccount:\S+", "", line)
        mentioned = set(TEST_NAMESPACE.findall(asked))
        if mentioned and namespace not in mentioned:
            continue
        denied.append(line)
    return denied


ROWS = 100


def apply(kube: Cluster, namespace: str, *docs: dict[str, Any]) -> None:
    result = subprocess.run(
        ["kubectl", "apply", "-n", namespace, "-f", "-"],
        input=yaml.safe_dump_all(docs),
        env=kube.env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def seed_users_to_s3(kube: Cluster, namespace: str, s3: S3Server, bucket: str) -> str:
    """The DuckDB -> S3 seed example, pointed at the test's S3 server; returns its name."""
    database = kube.claim(namespace, "duckdb-data") / "records.db"
    with duckdb.connect(str(database)) as db:
        db.execute("create schema public")
        db.execute(f"create table public.users as select i as id from range({ROWS}) t(i)")
    text = (EXAMPLES / "duckdb-to-s3.yaml").read_text()
    text = text.replace("http://localhost:9000", s3.endpoint_url).replace("my_bucket", bucket)
    ingestion = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "Ingestion")
    ingestion["spec"]["destination"]["credentials"] = {"secretRef": {"name": "s3-keys"}}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s3-keys"},
        "stringData": {
            "access_key_id": s3.access_key_id,
            "secret_access_key": s3.secret_access_key,
        },
    }
    apply(kube, namespace, secret, ingestion)
    return ingestion["metadata"]["name"]


def reconciled_end_to_end(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    operator: ChartReplica,
    s3: S3Server,
    bucket: str,
    timeout: float = 60,
) -> None:
    """Raise AssertionError unless the run succeeds, is recorded in status, Events and S3,
    and the operator met no permission error on the way."""
    custom = k8s.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        denied = permission_errors(operator.logs(), namespace)
        assert not denied, "the operator was denied something:\n" + "\n".join(denied[:5])
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        status = obj.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(0.3)
    assert status.get("phase") == "Succeeded", f"status={status}\n{operator.logs()[-3000:]}"
    assert status["lastRun"]["rows"] == ROWS
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix="records/_dlt_loads/")
    loads = [
        json.loads(s3.client().get_object(Bucket=bucket, Key=o["Key"])["Body"].read())["load_id"]
        for o in listing.get("Contents", [])
    ]
    assert loads == [status["lastLoadId"]]
    events = k8s.CoreV1Api(api).list_namespaced_event(namespace).items
    reasons = {e.reason for e in events if e.involved_object.kind == "Ingestion"}
    assert {"RunCreated", "RunSucceeded"} <= reasons, reasons
    assert not permission_errors(operator.logs(), namespace), operator.logs()[-3000:]


WATCH_ALL, WATCH_LIST = "all-namespaces", "namespace-list"
DECLARED = rbac.cluster_role_rules()
MUTATIONS = [
    (mode, rule["resources"])
    for mode in (WATCH_ALL, WATCH_LIST)
    for rule in DECLARED
    # Watching every namespace the chart grants no namespaces rule (kopf needs none).
    if not (mode == WATCH_ALL and rule["resources"] == ["namespaces"])
]


def install(release: Release, mode: str, apps_namespace: str) -> None:
    watched = [apps_namespace] if mode == WATCH_LIST else []
    release.install(operator_values(watchNamespaces=watched))


def remove_rule(api: k8s.ApiClient, release: Release, apps_namespace: str, resources: list) -> None:
    """Take the rule on `resources` out of whichever role of the release holds it."""
    authz = k8s.RbacAuthorizationV1Api(api)
    roles = [
        (authz.read_cluster_role, authz.replace_cluster_role, (release.fullname,)),
        (
            authz.read_namespaced_role,
            authz.replace_namespaced_role,
            (release.fullname, apps_namespace),
        ),
    ]
    for read, replace, key in roles:
        try:
            role = api.sanitize_for_serialization(read(*key))
        except k8s.ApiException as error:
            if error.status == 404:
                continue
            raise
        kept = [r for r in role["rules"] if r["resources"] != resources]
        if len(kept) < len(role["rules"]):
            role["rules"] = kept
            replace(*key, role)
            time.sleep(1)  # the authorizer's cache of RBAC objects follows within a moment
            return
    raise AssertionError(f"no role of the release has a rule on {resources}")


@pytest.mark.parametrize("mode", [WATCH_ALL, WATCH_LIST])
def test_operator_reconciles_as_the_chart_service_account(
    kube: Cluster,
    kube_api: k8s.ApiClient,
    release: Release,
    start_operator: Callable[..., list[ChartReplica]],
    apps_namespace: str,
    s3_server: S3Server,
    bucket: str,
    mode: str,
) -> None:
    install(release, mode, apps_namespace)
    (operator,) = start_operator()
    name = seed_users_to_s3(kube, apps_namespace, s3_server, bucket)
    reconciled_end_to_end(kube_api, apps_namespace, name, operator, s3_server, bucket)
    # The chart's runner defaults reached the Job (the example sets no resources of its own).
    job = k8s.BatchV1Api(kube_api).list_namespaced_job(apps_namespace).items[0]
    runner = kube_api.sanitize_for_serialization(job.spec.template.spec.containers[0])
    chart_defaults = yaml.safe_load((CHART / "values.yaml").read_text())["runner"]
    assert runner["resources"] == chart_defaults["resources"]
    # The chart's image (here the node's) runs the Jobs too.
    assert runner["image"] == kube.image


def test_the_chart_service_account_cannot_read_secrets(
    kube: Cluster, release: Release, apps_namespace: str
) -> None:
    release.install(operator_values())
    as_operator = kube.client_as(release.namespace, release.service_account())
    with pytest.raises(k8s.ApiException) as denied:
        k8s.CoreV1Api(as_operator).list_namespaced_secret(apps_namespace)
    assert denied.value.status == 403


@pytest.mark.parametrize(
    ("mode", "resources"), MUTATIONS, ids=[f"{m}-{','.join(r)}" for m, r in MUTATIONS]
)
def test_without_any_one_rule_the_reconcile_goes_wrong(
    kube: Cluster,
    kube_api: k8s.ApiClient,
    release: Release,
    start_operator: Callable[..., list[ChartReplica]],
    apps_namespace: str,
    s3_server: S3Server,
    bucket: str,
    mode: str,
    resources: list[str],
) -> None:
    install(release, mode, apps_namespace)
    remove_rule(kube_api, release, apps_namespace, resources)
    (operator,) = start_operator()
    name = seed_users_to_s3(kube, apps_namespace, s3_server, bucket)
    with pytest.raises(AssertionError):
        reconciled_end_to_end(kube_api, apps_namespace, name, operator, s3_server, bucket, 45)
