"""Every way a run can fail or get stuck shows up in the Ingestion's status with its message,
and a fixed spec recovers without recreating the resource."""

from __future__ import annotations

import pytest

from tests.operator.conftest import Ingestions, Operator
from tests.operator.test_operator_runs import example, users_db, users_to_s3
from tests.platform.cluster import Cluster
from tests.platform.s3 import S3Server

pytestmark = pytest.mark.cluster

NAME = "users-to-s3"


def test_missing_secret_key_is_create_container_config_error_naming_it(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    ingestions.secret("partial-keys", {"access_key_id": "AKIAPARTIAL"})
    users_to_s3(
        kube,
        namespace,
        s3_server,
        bucket,
        destination=example("duckdb-to-s3.yaml", s3_server, bucket)["Ingestion"]["spec"][
            "destination"
        ]
        | {"credentials": {"secretRef": {"name": "partial-keys"}}},
    )
    status = ingestions.wait(NAME, lambda s: s.get("reason") == "CreateContainerConfigError")[
        "status"
    ]
    assert status["phase"] == "Pending"
    assert "secret_access_key" in status["message"]
    assert "partial-keys" in status["message"]
    running = next(c for c in status["conditions"] if c["type"] == "Running")
    assert running["reason"] == "CreateContainerConfigError"
    assert ingestions.wait_for_events("CreateContainerConfigError")[0]["type"] == "Warning"

    # Fixing the spec (the right Secret) supersedes the stuck run and recovers.
    ingestions.patch(
        NAME, {"spec": {"destination": {"credentials": {"secretRef": {"name": "s3-credentials"}}}}}
    )
    status = ingestions.wait_for_phase(NAME, "Succeeded", timeout=120)["status"]
    assert status["observedGeneration"] == 2
    assert len(ingestions.jobs()) == 1  # the stuck one was deleted, not left to linger


# A registry on a closed loopback port: the pull fails at once, and nothing leaves the machine.
MISSING_IMAGE = "127.0.0.1:9/kingest/no-such-image:1"


def test_unknown_image_is_image_pull_back_off(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    runner = example("duckdb-to-s3.yaml", s3_server, bucket)["Ingestion"]["spec"]["runner"]
    users_to_s3(
        kube,
        namespace,
        s3_server,
        bucket,
        runner=runner | {"image": MISSING_IMAGE},
    )
    status = ingestions.wait(NAME, lambda s: s.get("reason") == "ImagePullBackOff")["status"]
    assert status["phase"] == "Pending"
    assert MISSING_IMAGE in status["message"]


def test_runner_error_is_the_failure_reason_and_message(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
) -> None:
    users_to_s3(kube, namespace, s3_server, "no-such-bucket-kingest")
    status = ingestions.wait_for_phase(NAME, "Failed")["status"]
    assert status["reason"] == "BucketNotFound"
    assert "no-such-bucket-kingest" in status["message"]
    assert status["lastRun"]["result"] == "Failed"
    assert "lastLoadId" not in status
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "BucketNotFound")
    (event,) = ingestions.wait_for_events("BucketNotFound")[:1]
    assert event["type"] == "Warning" and "no-such-bucket-kingest" in event["message"]


def test_backoff_limit_exceeded_keeps_the_runner_error(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
) -> None:
    runner = example("duckdb-to-s3.yaml", s3_server, "x")["Ingestion"]["spec"]["runner"]
    users_to_s3(
        kube,
        namespace,
        s3_server,
        "no-such-bucket-kingest",
        runner=runner | {"backoffLimit": 1},
    )
    status = ingestions.wait_for_phase(NAME, "Failed", timeout=90)["status"]
    assert status["reason"] == "BucketNotFound"
    assert "BackoffLimitExceeded: failed 2 attempts" in status["message"]


def test_deadline_exceeded_stops_a_slow_run(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    s3_server.faults.add(action="delay", method="PUT", path_regex=f"/{bucket}/", delay_s=30)
    runner = example("duckdb-to-s3.yaml", s3_server, bucket)["Ingestion"]["spec"]["runner"]
    users_to_s3(
        kube,
        namespace,
        s3_server,
        bucket,
        runner=runner | {"activeDeadlineSeconds": 3},
    )
    status = ingestions.wait_for_phase(NAME, "Failed", timeout=60)["status"]
    assert status["reason"] == "DeadlineExceeded"
    assert "deadline" in status["message"]


def test_rejected_runner_fields_make_the_ingestion_invalid_until_fixed(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    users_db(kube, namespace)
    runner = example("duckdb-to-s3.yaml", s3_server, bucket)["Ingestion"]["spec"]["runner"]
    users_to_s3(
        kube,
        namespace,
        s3_server,
        bucket,
        runner=runner | {"volumeMounts": [{"name": "not-a-volume", "mountPath": "/data"}]},
    )
    status = ingestions.wait_for_phase(NAME, "Invalid")["status"]
    assert "the runner Job was rejected" in status["message"]
    assert "not-a-volume" in status["message"]
    ingestions.patch(NAME, {"spec": {"runner": runner}})
    assert ingestions.wait_for_phase(NAME, "Succeeded")["status"]["observedGeneration"] == 2
