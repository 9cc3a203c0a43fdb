"""The validating admission webhook as the chart installs it: the API server calls the
operator's Pod through the webhook Service over TLS (the chart's own certificate), and
`kubectl apply` of a spec the operator cannot run fails with the operator's message."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.chart.conftest import (
    ChartReplica,
    Release,
    ingestion_body,
    operator_values,
)
from tests.operator.test_admission import changed
from tests.platform.cluster import Cluster

pytestmark = pytest.mark.cluster

# A schedule that never fires during the test, suspended besides: nothing runs.
GOOD = changed(schedule="@yearly", suspend=True)


BAD = [
    (changed(source__uri="ftp://host/x"), "ftp:// is not supported as a source"),
    (changed(schedule="61 * * * *"), "spec.schedule '61 * * * *'"),
    (changed(source__table="events.csv"), "expected '<bucket>/<file glob>'"),
    (
        changed(source__uri="s3://?access_key_id=AKIAKEY&secret_access_key=VERYSECRET"),
        "spec.source.uri holds a secret",
    ),
]


def kubectl_apply(kube: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    return subprocess.run(
        ["kubectl", "apply", "-n", namespace, "-f", "-"],
        input=yaml.safe_dump(ingestion_body(name, spec)),
        env=kube.env(),
        capture_output=True,
        text=True,
    )


def wait_for_webhook(kube: Cluster, namespace: str, operator: ChartReplica) -> None:
    """Until the operator's webhook answers: its Pod is Ready once the API server answered,
    and kopf starts the webhook server a moment later."""
    spec, _ = BAD[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = kubectl_apply(kube, namespace, "probe", spec)
        if result.returncode != 0:
            return
        kube.kubectl("delete", "ingestion", "probe", "-n", namespace, check=False)
        time.sleep(1)
    endpoints = kube.kubectl("get", "endpoints", "-A", "-o", "wide", check=False).stdout
    pods = kube.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
    raise AssertionError(
        f"the webhook never rejected a bad spec in 60 s; endpoints:\n{endpoints}\npods:\n{pods}"
        f"\noperator log:\n{operator.logs()[:3000]}"
    )


@pytest.fixture
def webhook(
    release: Release,
    kube: Cluster,
    apps_namespace: str,
    start_operator: Callable[..., list[ChartReplica]],
) -> Release:
    """The chart installed, its operator running and its webhook answering."""
    release.install(operator_values())
    (operator,) = start_operator()
    wait_for_webhook(kube, apps_namespace, operator)
    return release


def test_kubectl_apply_rejects_bad_specs_with_the_message_and_passes_a_good_one(
    webhook: Release, kube: Cluster, apps_namespace: str
) -> None:
    for spec, message in BAD:
        result = kubectl_apply(kube, apps_namespace, "bad", spec)
        assert result.returncode != 0, f"accepted: {spec}"
        assert 'admission webhook "ingestions.kingest.io" denied the request' in result.stderr
        assert message in result.stderr
        assert "VERYSECRET" not in result.stderr
    assert kube.kubectl("get", "ingestions", "-n", apps_namespace, "-o", "name").stdout == ""

    created = kubectl_apply(kube, apps_namespace, "good", GOOD)
    assert created.returncode == 0, created.stderr
    # An edit that breaks it is rejected too; the stored spec stays the good one.
    broken = kubectl_apply(kube, apps_namespace, "good", changed(source__uri="ftp://host/x"))
    assert broken.returncode != 0 and "ftp://" in broken.stderr


def serving_addresses(release: Release) -> list[str]:
    """The ready addresses behind the chart's webhook Service."""
    endpoints = k8s.CoreV1Api(release.api).read_namespaced_endpoints(
        f"{release.fullname}-webhook", release.namespace
    )
    return [a.ip for subset in endpoints.subsets or [] for a in subset.addresses or []]


def test_with_the_operator_down_deletes_and_applies_go_through(
    webhook: Release,
    kube: Cluster,
    apps_namespace: str,
    start_operator: Callable[..., list[ChartReplica]],
) -> None:
    assert kubectl_apply(kube, apps_namespace, "good", GOOD).returncode == 0
    start_operator(count=0)
    # Down means nothing answers: the webhook Service has no ready address left (a Pod that is
    # still shutting down leaves the endpoints at once; on a loaded node its deletion can take
    # longer than a minute).
    deadline = time.monotonic() + 60
    while serving_addresses(webhook) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert serving_addresses(webhook) == [], "the webhook Service still has a ready address"

    started = time.monotonic()
    deleted = kube.kubectl("delete", "ingestion", "good", "-n", apps_namespace, check=False)
    assert deleted.returncode == 0 and time.monotonic() - started < 10
    # failurePolicy Ignore: with nobody to ask, the API server accepts the change.
    assert kubectl_apply(kube, apps_namespace, "again", GOOD).returncode == 0
