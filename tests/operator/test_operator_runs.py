"""Ingestions run end to end: the operator (as its ServiceAccount) creates Jobs on a real
cluster, the node runs them as containers of the kingest image against the S3 server, and
the status, Events and logs tell the outcome, without a secret value anywhere."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from kubernetes import client as k8s

from tests.operator.conftest import Ingestions, Operator
from tests.platform.cluster import Cluster
from tests.platform.s3 import S3Server

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ACCESS_KEY = "AKIAKINGESTE2EKEY"
SECRET_KEY = "s3cr3t-value-never-shown"
STUDENTS_CSV = b"""student_id,name,gpa
1,Ada Lovelace,3.9
2,"Hopper, Grace",3.7
3,Alan Turing,
4,Katherine Johnson,4.0
"""


def example(file: str, s3: S3Server, bucket: str) -> dict[str, dict[str, Any]]:
    """The documents of an example manifest by kind, pointed at the test's S3 server and bucket,
    with the test's credentials in its Secret."""
    text = (EXAMPLES / file).read_text()
    text = text.replace("http://localhost:9000", s3.endpoint_url).replace("my_bucket", bucket)
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(text)}
    if "Secret" in docs:
        docs["Secret"]["stringData"] = {
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }
    return docs


def apply(kube: Cluster, namespace: str, *docs: dict[str, Any]) -> None:
    manifest = yaml.safe_dump_all(docs)
    result = subprocess.run(
        ["kubectl", "apply", "-n", namespace, "-f", "-"],
        input=manifest,
        env=kube.env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def users_db(kube: Cluster, namespace: str, rows: int = 1000) -> None:
    """records.db with public.users on the claim the example mounts."""
    path = kube.claim(namespace, "duckdb-data") / "records.db"
    with duckdb.connect(str(path)) as db:
        db.execute("create schema if not exists public")
        db.execute(
            "create or replace table public.users as select i as id, 'user ' || i as name "
            f"from range(1, {rows + 1}) t(i)"
        )


def users_to_s3(
    kube: Cluster, namespace: str, s3: S3Server, bucket: str, **spec: Any
) -> dict[str, Any]:
    """Apply the duckdb-to-s3 example (plus `spec` changes) with its Secret; returns it."""
    users_db(kube, namespace)
    docs = example("duckdb-to-s3.yaml", s3, bucket)
    secret = example("s3-to-duckdb.yaml", s3, bucket)["Secret"]
    ingestion = docs["Ingestion"]
    ingestion["spec"] |= spec
    apply(kube, namespace, secret, ingestion)
    return ingestion


def loads_in_s3(s3: S3Server, bucket: str, prefix: str) -> list[str]:
    """Load ids of the `_dlt_loads` entries under `prefix`."""
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/_dlt_loads/")
    ids = []
    for item in listing.get("Contents", []):
        body = s3.client().get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        ids.append(json.loads(body)["load_id"])
    return ids


def completed_jobs(ingestions: Ingestions) -> list[dict[str, Any]]:
    return [j for j in ingestions.jobs() if (j.get("status") or {}).get("succeeded")]


def test_duckdb_to_s3_seed_example(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    users_to_s3(kube, namespace, s3_server, bucket)
    obj = ingestions.wait_for_phase("users-to-s3", "Succeeded", "Failed")
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    assert [status["lastLoadId"]] == loads_in_s3(s3_server, bucket, "records")
    assert status["lastRun"]["rows"] == 1000
    assert status["lastRun"]["trigger"] == "Generation"
    assert status["lastSuccessfulTime"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Running": "False",
        "Succeeded": "True",
    }
    assert len(ingestions.jobs()) == 1
    table = kube.kubectl("get", "ingestions", "-n", namespace).stdout
    assert "Succeeded" in table and status["lastLoadId"] in table and "1000" in table
    ingestions.wait_for_events("RunSucceeded")
    assert "RunCreated" in [e["reason"] for e in ingestions.events()]


def test_s3_to_duckdb_seed_example(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    for module in ("kingest.runner.s3_source", "kingest.runner.duckdb_destination"):
        pytest.importorskip(module, reason="the S3 source / DuckDB destination have not landed")
    s3_server.client().put_object(
        Bucket=bucket, Key="students/students_details.csv", Body=STUDENTS_CSV
    )
    docs = example("s3-to-duckdb.yaml", s3_server, bucket)
    volume = kube.volume(namespace, "duckdb-data")  # for the example's own claim
    apply(kube, namespace, docs["Secret"], docs["PersistentVolumeClaim"], docs["Ingestion"])
    obj = ingestions.wait_for_phase("students-to-duckdb", "Succeeded", "Failed")
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    assert status["lastRun"]["rows"] == 4
    database = volume / "s3_data.duckdb"
    with duckdb.connect(str(database), read_only=True) as db:
        assert db.execute("select count(*) from processed_students.student_details").fetchone() == (
            4,
        )
        loads = db.execute("select load_id from processed_students._dlt_loads").fetchall()
    assert loads == [(status["lastLoadId"],)]


def test_spec_change_runs_again(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    users_to_s3(kube, namespace, s3_server, bucket)
    first = ingestions.wait_for_phase("users-to-s3", "Succeeded")["status"]
    ingestions.patch("users-to-s3", {"spec": {"loaderFileFormat": "jsonl"}})
    second = ingestions.wait(
        "users-to-s3",
        lambda s: s.get("observedGeneration") == 2 and s.get("phase") == "Succeeded",
    )["status"]
    assert second["lastRun"]["generation"] == 2
    assert second["lastLoadId"] != first["lastLoadId"]
    assert len(completed_jobs(ingestions)) == 2
    assert [r["generation"] for r in second["runs"]] == [2, 1]
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.endswith(".jsonl") and "/users/" in k for k in keys)


def test_run_requested_annotation_runs_now_once_per_value(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    users_to_s3(kube, namespace, s3_server, bucket)
    ingestions.wait_for_phase("users-to-s3", "Succeeded")
    request = {"metadata": {"annotations": {"kingest.io/run-requested": "first"}}}
    ingestions.patch("users-to-s3", request)
    status = ingestions.wait(
        "users-to-s3",
        lambda s: s.get("handledRunRequest") == "first" and s.get("phase") == "Succeeded",
    )["status"]
    assert status["lastRun"]["trigger"] == "Requested"
    assert status["observedGeneration"] == 1
    # The same value again (e.g. another label change) is no new request.
    ingestions.patch("users-to-s3", {"metadata": {"labels": {"team": "data"}}})
    time.sleep(2)
    assert len(ingestions.jobs()) == 2
    assert len(loads_in_s3(s3_server, bucket, "records")) == 2


def test_a_new_generation_waits_for_the_active_run(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    s3_server.faults.add(action="delay", method="PUT", path_regex=f"/{bucket}/", delay_s=4)
    users_to_s3(kube, namespace, s3_server, bucket)
    ingestions.wait_for_phase("users-to-s3", "Running")
    ingestions.patch("users-to-s3", {"spec": {"loaderFileFormat": "jsonl"}})
    most_active = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = ingestions.jobs()
        active = [j for j in jobs if (j.get("status") or {}).get("active")]
        most_active = max(most_active, len(active))
        status = ingestions.get("users-to-s3").get("status") or {}
        if len(jobs) == 1 and "waits for" in (status.get("message") or ""):
            assert status["observedGeneration"] == 1
        if status.get("observedGeneration") == 2 and status.get("phase") == "Succeeded":
            break
        time.sleep(0.1)
    assert status.get("observedGeneration") == 2 and status.get("phase") == "Succeeded", status
    assert most_active == 1
    assert len(completed_jobs(ingestions)) == 2


def test_operator_killed_mid_run_adopts_the_job(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    s3_server.faults.add(action="delay", method="PUT", path_regex=f"/{bucket}/", delay_s=4)
    users_to_s3(kube, namespace, s3_server, bucket)
    ingestions.wait_for_phase("users-to-s3", "Running")
    operator.kill()
    operator.start()
    status = ingestions.wait_for_phase("users-to-s3", "Succeeded", "Failed", timeout=60)["status"]
    assert status["phase"] == "Succeeded"
    assert len(ingestions.jobs()) == 1
    assert [status["lastLoadId"]] == loads_in_s3(s3_server, bucket, "records")
    assert len(status["runs"]) == 1


def test_deleting_an_ingestion_deletes_its_jobs_and_pods(
    kube: Cluster,
    kube_api: k8s.ApiClient,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    users_to_s3(kube, namespace, s3_server, bucket)
    ingestions.wait_for_phase("users-to-s3", "Succeeded")
    core = k8s.CoreV1Api(kube_api)
    assert core.list_namespaced_pod(namespace).items
    ingestions.delete("users-to-s3")
    deadline = time.monotonic() + 60
    while ingestions.jobs() or core.list_namespaced_pod(namespace).items:
        assert time.monotonic() < deadline, "the garbage collector left Jobs or Pods behind"
        time.sleep(0.5)


def test_no_secret_value_in_job_events_status_or_logs(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    users_to_s3(kube, namespace, s3_server, bucket)
    obj = ingestions.wait_for_phase("users-to-s3", "Succeeded")
    (job,) = ingestions.jobs()
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    secret_refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in env if "valueFrom" in v}
    assert secret_refs["KINGEST_DESTINATION_ACCESS_KEY_ID"]["key"] == "access_key_id"
    (pod,) = ingestions.pods()
    # It did arrive: the kubelet resolved it into the container's environment.
    assert kube.container_env(pod)["KINGEST_DESTINATION_SECRET_ACCESS_KEY"] == SECRET_KEY
    seen = {
        "job": json.dumps(job),
        "pod": json.dumps(pod),
        "events": json.dumps(ingestions.events()),
        "status": json.dumps(obj["status"]),
        "operator log": operator.logs(),
        "runner log": kube.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout,
    }
    for where, text in seen.items():
        assert SECRET_KEY not in text, f"secret value in the {where}"
        assert ACCESS_KEY not in text, f"access key in the {where}"


def test_whole_uri_from_a_secret(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    uri = f"s3://?endpoint_url={s3_server.endpoint_url}&access_key_id={ACCESS_KEY}&secret_access_key={SECRET_KEY}"
    ingestions.secret("warehouse-uri", {"uri": uri})
    destination = {
        "uriFrom": {"secretKeyRef": {"name": "warehouse-uri", "key": "uri"}},
        "table": f"{bucket}/records",
    }
    users_to_s3(kube, namespace, s3_server, bucket, destination=destination)
    status = ingestions.wait_for_phase("users-to-s3", "Succeeded", "Failed")["status"]
    assert status["phase"] == "Succeeded", status
    assert [status["lastLoadId"]] == loads_in_s3(s3_server, bucket, "records")
    (job,) = ingestions.jobs()
    assert SECRET_KEY not in json.dumps(job)


def test_s3_to_s3_with_separate_credentials_per_side(
    kube: Cluster,
    namespace: str,
    operator: Operator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    pytest.importorskip("kingest.runner.s3_source", reason="the S3 source has not landed")
    s3_server.client().put_object(Bucket=bucket, Key="in/students.csv", Body=STUDENTS_CSV)
    ingestions.secret("account-a", {"access_key_id": "AKIASOURCE", "secret_access_key": "a-key"})
    ingestions.secret("account-b", {"access_key_id": "AKIADEST", "secret_access_key": "b-key"})
    endpoint = f"s3://?endpoint_url={s3_server.endpoint_url}"
    ingestions.create(
        "copy",
        {
            "source": {
                "uri": endpoint,
                "table": f"{bucket}/in/*.csv",
                "credentials": {"secretRef": {"name": "account-a"}},
            },
            "destination": {
                "uri": endpoint,
                "table": f"{bucket}/out",
                "credentials": {"secretRef": {"name": "account-b"}},
            },
        },
    )
    status = ingestions.wait_for_phase("copy", "Succeeded", "Failed")["status"]
    assert status["phase"] == "Succeeded", status
    (pod,) = ingestions.pods()
    env = kube.container_env(pod)
    assert env["KINGEST_SOURCE_ACCESS_KEY_ID"] == "AKIASOURCE"
    assert env["KINGEST_DESTINATION_ACCESS_KEY_ID"] == "AKIADEST"
    assert [status["lastLoadId"]] == loads_in_s3(s3_server, bucket, "out")
