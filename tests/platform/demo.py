"""`make demo`: kingest's main job end to end on the local platform.

Starts a real control plane, the kubelet harness and an S3-compatible server on loopback,
installs the Ingestion CRD, runs the operator, puts the seed's
`students/students_details.csv` into a bucket, applies the manifests of both seed examples
(S3 -> DuckDB, then DuckDB -> S3), waits for them to succeed, shows what they did, and
leaves everything running for you to play with until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from kubernetes import client as k8s

from tests.platform.kube import ControlPlane
from tests.platform.kubelet import Kubelet
from tests.platform.processes import ManagedProcess
from tests.platform.s3 import S3Server

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
NAMESPACE = "default"
STUDENTS_CSV = """\
student_id,name,email,enrolled_on,gpa,active
1,Ada Lovelace,ada@example.com,2025-09-01,3.9,true
2,"Hopper, Grace",grace@example.com,2025-09-01,3.7,true
3,Alan Turing,alan@example.com,2024-09-02,,false
4,"Katherine ""Kay"" Johnson",kay@example.com,2026-01-15,4.0,true
"""


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def kubectl(kube: ControlPlane, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["kubectl", *args],
        env=kube.env(),
        input=stdin,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def wait_for_phase(kube: ControlPlane, name: str, timeout: float = 180) -> dict:
    custom = k8s.CustomObjectsApi(kube.api_client())
    deadline = time.monotonic() + timeout
    phase = None
    while time.monotonic() < deadline:
        obj = custom.get_namespaced_custom_object(
            "kingest.io", "v1alpha1", NAMESPACE, "ingestions", name
        )
        status = obj.get("status") or {}
        if status.get("phase") != phase:
            phase = status.get("phase")
            print(f"   {name}: {phase}", flush=True)
        if phase in ("Succeeded", "Failed", "Invalid"):
            return obj
        time.sleep(0.5)
    raise SystemExit(f"{name} did not finish within {timeout:.0f} s (last phase: {phase})")


def render_example(path: Path, s3: S3Server) -> str:
    """An example manifest with the local S3 endpoint in place of the user's."""
    text = path.read_text()
    return re.sub(r"http://localhost:9000", s3.endpoint_url, text)


def main() -> int:
    root = REPO / ".demo"
    root.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    stopping: list[object] = []

    say("starting the local platform (control plane, kubelet harness, S3 server)")
    started = time.monotonic()
    s3 = S3Server(work)
    stopping.append(s3)
    kube = ControlPlane(work / "kube")
    stopping.append(kube)
    kubelet = Kubelet(kube.api_client(), work / "kubelet")
    stopping.append(kubelet)
    kubelet.serve(NAMESPACE)
    print(f"   ready in {time.monotonic() - started:.1f} s", flush=True)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        say("installing the Ingestion CRD and starting the operator")
        kubectl(kube, "apply", "-f", str(REPO / "crds"))
        kubectl(kube, "wait", "--for=condition=Established", "crd/ingestions.kingest.io")
        operator = ManagedProcess(
            "operator",
            [str(Path(sys.executable).parent / "kingest"), "operator", "--all-namespaces"],
            work,
            env={**kube.env(), "PATH": os.environ.get("PATH", "")},
        )
        stopping.append(operator)

        say("putting the seed's students/students_details.csv into bucket my_bucket")
        s3.client().create_bucket(Bucket="my_bucket")
        s3.client().put_object(
            Bucket="my_bucket", Key="students/students_details.csv", Body=STUDENTS_CSV.encode()
        )

        say("seed example 1: S3 -> DuckDB (examples/s3-to-duckdb.yaml)")
        kubectl(kube, "apply", "-f", "-", stdin=render_example(EXAMPLES / "s3-to-duckdb.yaml", s3))
        first = wait_for_phase(kube, "students-to-duckdb")

        say("seed example 2: DuckDB -> S3 (examples/duckdb-to-s3.yaml)")
        records = kubelet.claim_path(NAMESPACE, "duckdb-data") / "records.db"
        with duckdb.connect(str(records)) as db:
            db.execute("create schema if not exists public")
            db.execute(
                "create or replace table public.users as select i as id, 'user ' || i as name,"
                " date '2026-01-01' + i::integer as signed_up from range(1, 1001) t(i)"
            )
        kubectl(kube, "apply", "-f", "-", stdin=render_example(EXAMPLES / "duckdb-to-s3.yaml", s3))
        second = wait_for_phase(kube, "users-to-s3")

        say("kubectl get ingestions")
        print(kubectl(kube, "get", "ingestions", "-o", "wide"), flush=True)

        say("rows loaded into DuckDB (the PVC 'duckdb-data' -> s3_data.duckdb)")
        database = kubelet.claim_path(NAMESPACE, "duckdb-data") / "s3_data.duckdb"
        with duckdb.connect(str(database), read_only=True) as db:
            print(db.sql("select * from processed_students.student_details"), flush=True)

        say("the S3 object tree of my_bucket/records")
        listing = s3.client().list_objects_v2(Bucket="my_bucket", Prefix="records/")
        for item in listing.get("Contents", []):
            print(f"   {item['Key']}  ({item['Size']} bytes)")

        say("status of the two Ingestions")
        for obj in (first, second):
            status = obj.get("status") or {}
            print(json.dumps({obj["metadata"]["name"]: status.get("lastRun")}, indent=2))

        say("the platform keeps running; in another shell:")
        print(f"   export KUBECONFIG={kube.kubeconfig}")
        print("   kubectl get ingestions")
        print(f"   S3 endpoint: {s3.endpoint_url} (see {work})")
        print("\nCtrl-C stops everything.", flush=True)
        while operator.alive():
            time.sleep(1)
        print(f"the operator exited:\n{operator.log_tail()}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        say("stopping")
        for piece in reversed(stopping):
            piece.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
