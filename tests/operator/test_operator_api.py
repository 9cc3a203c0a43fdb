"""The Ingestion API on a real control plane: CRD schema, invalid specs, the operator's RBAC."""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s

from tests.operator.conftest import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, Ingestions, Operator
from tests.platform.cluster import Cluster

pytestmark = pytest.mark.cluster

S3_TO_DUCKDB = {
    "source": {"uri": "s3://?endpoint_url=http://127.0.0.1:9", "table": "bucket/*.csv"},
    "destination": {"uri": "duckdb:////data/out.duckdb", "table": "raw.students"},
}


DUCKDB_TO_S3 = {
    "source": {"uri": "duckdb:////data/records.db", "table": "public.users"},
    "destination": {"uri": "s3://?endpoint_url=http://127.0.0.1:9", "table": "bucket/records"},
}


def _with(side: str, **changes: str) -> dict:
    return DUCKDB_TO_S3 | {side: DUCKDB_TO_S3[side] | changes}


def test_kubectl_explain_describes_the_spec(kube: Cluster, ingestion_crd: None) -> None:
    # The API server publishes a new CRD's OpenAPI a few seconds after it is Established.
    deadline = time.monotonic() + 60
    while (explain := kube.kubectl("explain", "ingestion.spec.source", check=False)).returncode:
        assert time.monotonic() < deadline, explain.stderr
        time.sleep(1)
    explained = explain.stdout
    assert "uriFrom" in explained
    assert "ingestr URI without secrets" in explained
    # The load fields, as ingestr's flags: the masks' syntax and a contract's modes.
    spec = kube.kubectl("explain", "ingestion.spec").stdout
    assert "'column:algorithm[:param]'" in " ".join(spec.split())
    assert "discard_value" in spec and "scd2" in spec
    cursor = kube.kubectl("explain", "ingestion.status.cursor").stdout
    assert "the next run loads rows after cursor.value" in " ".join(cursor.split())


def test_kubectl_knows_the_short_name(kube: Cluster, ingestion_crd: None, namespace: str) -> None:
    assert kube.kubectl("get", "ingest", "-n", namespace).returncode == 0


def test_api_server_rejects_an_unknown_strategy(
    ingestions: Ingestions, ingestion_crd: None
) -> None:
    with pytest.raises(k8s.ApiException) as rejected:
        ingestions.create("bad-strategy", S3_TO_DUCKDB | {"incrementalStrategy": "upsert"})
    assert rejected.value.status == 422
    assert "spec.incrementalStrategy" in rejected.value.body


def test_api_server_rejects_uri_and_uri_from_together(
    ingestions: Ingestions, ingestion_crd: None
) -> None:
    both = _with("source", uriFrom={"secretKeyRef": {"name": "s", "key": "uri"}})
    with pytest.raises(k8s.ApiException) as rejected:
        ingestions.create("both-uris", both)
    assert rejected.value.status == 422


def test_api_server_fills_in_defaults(ingestions: Ingestions, ingestion_crd: None) -> None:
    created = ingestions.create("defaults", S3_TO_DUCKDB)
    assert created["spec"]["incrementalStrategy"] == "replace"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (_with("source", uri="postgres://db/x"), "postgres:// is not supported as a source"),
        (_with("destination", uri="s3://?regoin=eu-west-1"), "'regoin'"),
        (
            _with(
                "destination", uri="s3://?access_key_id=AKIAVISIBLE&secret_access_key=VERYSECRET"
            ),
            "spec.destination.credentials",
        ),
        (_with("source", uri="duckdb://"), "no database file"),
        (_with("source", table="a.b.c.d"), "a.b.c.d"),
        (_with("destination", uri="s3://?layout={nonsense}"), "layout"),
        (
            S3_TO_DUCKDB | {"source": S3_TO_DUCKDB["source"] | {"uri": "s3://?regoin=x"}},
            "'regoin'",
        ),
        (S3_TO_DUCKDB | {"source": S3_TO_DUCKDB["source"] | {"table": "no-glob"}}, "table"),
    ],
    ids=[
        "bad-scheme",
        "unknown-parameter",
        "inline-secret",
        "no-duckdb-file",
        "bad-table",
        "bad-layout",
        "s3-source-unknown-parameter",
        "s3-source-table-without-bucket-and-glob",
    ],
)
def test_invalid_spec_is_reported_without_a_job(
    ingestions: Ingestions, operator: Operator, spec: dict, expected: str
) -> None:
    ingestions.create("broken", spec)
    obj = ingestions.wait_for_phase("broken", "Invalid")
    status = obj["status"]
    assert expected in status["message"]
    assert "VERYSECRET" not in str(status)
    assert status["observedGeneration"] == 1
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ingestions.jobs() == []
    warnings = ingestions.wait_for_events("InvalidSpec")
    assert all("VERYSECRET" not in e["message"] for e in warnings)


def test_operator_identity_cannot_read_secrets(kube: Cluster, operator_kubeconfig) -> None:
    as_operator = kube.client_as(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
    with pytest.raises(k8s.ApiException) as denied:
        k8s.CoreV1Api(as_operator).list_secret_for_all_namespaces()
    assert denied.value.status == 403
