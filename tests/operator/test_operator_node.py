"""What only a real node shows: the runner in the image under the restricted security context,
its volume permissions, memory limits enforced by the kernel, and its log through the API."""

from __future__ import annotations

import pytest

from tests.operator.conftest import Ingestions, Operator
from tests.operator.test_operator_runs import STUDENTS_CSV, apply, example, users_to_s3
from tests.platform.cluster import Cluster
from tests.platform.s3 import S3Server

pytestmark = pytest.mark.cluster

RUN_AS = 65532


def test_the_runner_writes_only_to_its_volumes_as_its_user_and_logs_its_run(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    s3_server.client().put_object(
        Bucket=bucket, Key="students/students_details.csv", Body=STUDENTS_CSV
    )
    docs = example("s3-to-duckdb.yaml", s3_server, bucket)
    volume = kube.volume(namespace, "duckdb-data")
    apply(kube, namespace, docs["Secret"], docs["PersistentVolumeClaim"], docs["Ingestion"])
    status = ingestions.wait_for_phase("students-to-duckdb", "Succeeded", "Failed")["status"]
    assert status["phase"] == "Succeeded", status

    (pod,) = ingestions.pods()
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["runAsUser"] == RUN_AS
    # The root filesystem was read-only, so everything the run wrote is on its volumes: the
    # DuckDB file on the claim, as the runner's user, in a folder the kubelet gave its group.
    database = volume / "s3_data.duckdb"
    assert database.stat().st_uid == RUN_AS
    assert volume.stat().st_gid == RUN_AS
    state = pod["status"]["containerStatuses"][0]
    assert state["containerID"].startswith("containerd://")
    assert state["imageID"].startswith("sha256:")
    assert state["image"].endswith(kube.image.rpartition("/")[2])
    log = kube.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    assert status["lastLoadId"] in log


def test_a_runner_over_its_memory_limit_is_oom_killed_and_the_ingestion_says_so(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    runner = example("duckdb-to-s3.yaml", s3_server, bucket)["Ingestion"]["spec"]["runner"]
    tight = {"requests": {"memory": "24Mi"}, "limits": {"memory": "24Mi"}}
    users_to_s3(kube, namespace, s3_server, bucket, runner=runner | {"resources": tight})
    status = ingestions.wait_for_phase("users-to-s3", "Failed", "Succeeded", timeout=90)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "OOMKilled"), status
    (pod,) = ingestions.pods()
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    assert ingestions.wait_for_events("OOMKilled")[0]["type"] == "Warning"
