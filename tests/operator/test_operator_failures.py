"""Every way a run can fail or get stuck shows up in the Ingestion's status with its message,
and a fixed spec recovers without recreating the resource."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.operator.conftest import Ingestions, Operator
from tests.operator.test_operator_runs import apply, example, users_db, users_to_s3
from tests.platform.cluster import Cluster
from tests.platform.processes import free_port
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


WAIT_RUNNING = ("--for=condition=Running", "--timeout=3s")


def _condition(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def _delete_job(kube_api: k8s.ApiClient, namespace: str, name: str) -> None:
    k8s.BatchV1Api(kube_api).delete_namespaced_job(name, namespace, propagation_policy="Background")


def test_a_running_job_deleted_ends_the_run_job_deleted_within_seconds(
    kube: Cluster,
    kube_api: k8s.ApiClient,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    # The runner's uploads stall, so it is still running when its Job is deleted.
    s3_server.faults.add(
        action="delay", method="PUT", path_regex=f"/{bucket}/", delay_s=60, times=None
    )
    users_to_s3(kube, namespace, s3_server, bucket)
    running = ingestions.wait(NAME, lambda s: _condition(s, "Running").get("status") == "True")
    job = running["status"]["lastRun"]["job"]
    _delete_job(kube_api, namespace, job)
    started = time.monotonic()
    status = ingestions.wait_for_phase(NAME, "Failed", timeout=20)["status"]
    assert time.monotonic() - started < 10
    assert status["reason"] == "JobDeleted"
    assert (status["lastRun"]["job"], status["lastRun"]["result"]) == (job, "Failed")
    assert (_condition(status, "Ready")["status"], _condition(status, "Running")["status"]) == (
        "False",
        "False",
    )
    (event,) = ingestions.wait_for_events("JobDeleted")
    assert event["type"] == "Warning" and job in event["message"]
    assert "JobDeleted" in operator.logs()


def test_running_stays_false_on_a_missing_secret_and_deleting_the_job_ends_the_run(
    kube: Cluster,
    kube_api: k8s.ApiClient,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    destination = example("duckdb-to-s3.yaml", s3_server, bucket)["Ingestion"]["spec"][
        "destination"
    ]
    users_to_s3(
        kube,
        namespace,
        s3_server,
        bucket,
        destination=destination | {"credentials": {"secretRef": {"name": "no-such-secret"}}},
    )
    stuck = ingestions.wait(NAME, lambda s: s.get("reason") == "CreateContainerConfigError")
    running = _condition(stuck["status"], "Running")
    assert (running["status"], running["reason"]) == ("False", "CreateContainerConfigError")
    waited = subprocess.run(
        ["kubectl", "wait", "-n", namespace, f"ingestion/{NAME}", *WAIT_RUNNING],
        env=kube.env(),
        capture_output=True,
        text=True,
    )
    assert waited.returncode != 0, waited.stdout  # it waits: no container runs

    _delete_job(kube_api, namespace, stuck["status"]["lastRun"]["job"])
    status = ingestions.wait_for_phase(NAME, "Failed", timeout=20)["status"]
    assert status["reason"] == "JobDeleted"
    assert "CreateContainerConfigError" in status["message"]
    assert ingestions.wait_for_events("JobDeleted")[0]["type"] == "Warning"


def test_a_transient_source_failure_is_retried_as_a_second_attempt(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    s3_server.client().put_object(
        Bucket=bucket, Key="students/students_details.csv", Body=b"id,name\n1,Ada\n"
    )
    # Every read of the bucket answers 503 until the test clears it: SourceUnavailable.
    s3_server.faults.add(method="GET", path_regex=f"/{bucket}", status=503, times=None)
    docs = example("s3-to-duckdb.yaml", s3_server, bucket)
    kube.volume(namespace, "duckdb-data")
    ingestion = docs["Ingestion"]
    ingestion["spec"]["retry"] = {"limit": 2, "backoffSeconds": 15}
    apply(kube, namespace, docs["Secret"], docs["PersistentVolumeClaim"], ingestion)
    name = ingestion["metadata"]["name"]

    waiting = ingestions.wait(name, lambda s: s.get("reason") == "RetryScheduled", timeout=120)
    status = waiting["status"]
    first = status["lastRun"]
    assert (first["result"], first["reason"]) == ("Failed", "SourceUnavailable")
    assert status["phase"] == "Pending" and status["nextRetryTime"]
    assert ingestions.wait_for_events("SourceUnavailable")[0]["type"] == "Warning"
    s3_server.faults.clear()

    done = ingestions.wait_for_phase(name, "Succeeded", "Failed", timeout=120)["status"]
    assert done["phase"] == "Succeeded", done
    assert done["lastRun"]["attempt"] == 2
    assert [r["job"] for r in done["runs"]][1] == first["job"]
    assert len(ingestions.jobs()) == 2  # each attempt is its own Job
    (retried,) = ingestions.wait_for_events("RunRetried")
    assert "attempt 2 of 3" in retried["message"]


def test_a_data_error_is_not_retried_and_each_run_event_is_one_json_log_line(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
) -> None:
    operator.stop()
    operator.extra_args = ["--log-format", "json"]
    operator.start()
    users_to_s3(kube, namespace, s3_server, "no-such-bucket-kingest")
    status = ingestions.wait_for_phase(NAME, "Failed")["status"]
    assert status["reason"] == "BucketNotFound" and "nextRetryTime" not in status
    time.sleep(3)
    assert len(ingestions.jobs()) == 1

    lines = [json.loads(line) for line in operator.logs().splitlines() if line.startswith("{")]
    events = [(line.get("event"), line["level"]) for line in lines if line.get("ingestion") == NAME]
    assert ("RunCreated", "INFO") in events and ("BucketNotFound", "INFO") in events
    assert all(line["level"] in ("INFO", "DEBUG") for line in lines), [
        line for line in lines if line["level"] not in ("INFO", "DEBUG")
    ]


def test_an_operator_that_cannot_reach_the_api_says_so_and_is_not_ready(
    operator_kubeconfig: Path, namespace: str, tmp_path: Path, kube: Cluster
) -> None:
    closed = f"https://127.0.0.1:{free_port()}"
    config = yaml.safe_load(operator_kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = closed
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(yaml.safe_dump(config))
    ready_port = free_port()
    cut_off = Operator(unreachable, namespace, tmp_path, kube.image)
    cut_off.extra_args = ["--readiness", f"http://127.0.0.1:{ready_port}/readyz"]
    cut_off.start()  # returns once its liveness endpoint answers: alive, only not ready
    try:
        time.sleep(4)
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"http://127.0.0.1:{ready_port}/readyz", timeout=2)
        assert not_ready.value.code == 503
        assert closed in not_ready.value.read().decode()
        logs = cut_off.logs()
        assert f"cannot reach the API server at {closed}: " in logs
        assert "Connection refused" in logs and "retrying in" in logs
        assert "Traceback" not in logs
    finally:
        cut_off.stop()
