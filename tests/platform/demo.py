"""`make demo`: kingest's main job end to end on the local platform, as users run it.

Starts a one-node Kubernetes cluster on this machine (control plane, kubelet + containerd,
kube-proxy; the kingest image built from the Dockerfile) and an S3-compatible server at the
node's IP, installs the Helm chart (the CRD and the operator Deployment, which runs on the
node), puts the seed's `students/students_details.csv` into a bucket, applies the manifests
of both seed examples (S3 -> DuckDB, then DuckDB -> S3), waits for them to succeed, shows
what they did, and leaves everything running for you to play with until Ctrl-C.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from kubernetes import client as k8s

from tests.platform.cluster import Cluster
from tests.platform.helm import Helm
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


def kubectl(kube: Cluster, *args: str, stdin: str | None = None) -> str:
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


def wait_for_phase(kube: Cluster, name: str, timeout: float = 180) -> dict:
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

    say("starting the local cluster (control plane, a real node, S3 server)")
    print(
        "   the first run on a machine builds the Kubernetes binaries and the image: ~15 min",
        flush=True,
    )
    started = time.monotonic()

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        kube = Cluster(work / "kube")
        stopping.append(kube)
        assert kube.node_ip is not None
        s3 = S3Server(work, host=kube.node_ip)
        stopping.append(s3)
        print(f"   ready in {time.monotonic() - started:.1f} s (image {kube.image})", flush=True)

        say("helm install kingest charts/kingest (the CRD, and the operator on the node)")
        kubectl(kube, "create", "namespace", "kingest-system")
        repository, _, tag = kube.image.rpartition(":")
        values = {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"}}
        Helm(kube, "kingest-system").install(REPO / "charts" / "kingest", "kingest", values)
        kubectl(
            kube, "-n", "kingest-system", "rollout", "status", "deployment/kingest",
            "--timeout=120s",
        )  # fmt: skip
        print(kubectl(kube, "-n", "kingest-system", "get", "pods", "-o", "wide"), flush=True)

        say("putting the seed's students/students_details.csv into bucket my_bucket")
        s3.client().create_bucket(Bucket="my_bucket")
        s3.client().put_object(
            Bucket="my_bucket", Key="students/students_details.csv", Body=STUDENTS_CSV.encode()
        )

        say("seed example 1: S3 -> DuckDB (examples/s3-to-duckdb.yaml)")
        data = kube.volume(NAMESPACE, "duckdb-data")  # for the example's claim
        kubectl(kube, "apply", "-f", "-", stdin=render_example(EXAMPLES / "s3-to-duckdb.yaml", s3))
        first = wait_for_phase(kube, "students-to-duckdb")

        say("seed example 2: DuckDB -> S3 (examples/duckdb-to-s3.yaml)")
        with duckdb.connect(str(data / "records.db")) as db:
            db.execute("create schema if not exists public")
            db.execute(
                "create or replace table public.users as select i as id, 'user ' || i as name,"
                " date '2026-01-01' + i::integer as signed_up from range(1, 1001) t(i)"
            )
        kubectl(kube, "apply", "-f", "-", stdin=render_example(EXAMPLES / "duckdb-to-s3.yaml", s3))
        second = wait_for_phase(kube, "users-to-s3")

        say("kubectl get ingestions")
        print(kubectl(kube, "get", "ingestions", "-o", "wide"), flush=True)

        say("the runs' Pods (kubectl get pods) and the first one's log")
        print(kubectl(kube, "get", "pods", "-o", "wide"), flush=True)
        pod = kubectl(kube, "get", "pods", "-o", "name").split()[0]
        print(kubectl(kube, "logs", pod), flush=True)

        say("rows loaded into DuckDB (the PVC 'duckdb-data' -> s3_data.duckdb)")
        with duckdb.connect(str(data / "s3_data.duckdb"), read_only=True) as db:
            print(db.sql("select * from processed_students.student_details"), flush=True)

        say("the S3 object tree of my_bucket/records")
        listing = s3.client().list_objects_v2(Bucket="my_bucket", Prefix="records/")
        for item in listing.get("Contents", []):
            print(f"   {item['Key']}  ({item['Size']} bytes)")

        say("status of the two Ingestions")
        for obj in (first, second):
            status = obj.get("status") or {}
            print(json.dumps({obj["metadata"]["name"]: status.get("lastRun")}, indent=2))

        say("the cluster keeps running; in another shell:")
        print(f"   export KUBECONFIG={kube.kubeconfig}")
        print("   kubectl get ingestions,jobs,pods -A")
        print(f"   S3 endpoint: {s3.endpoint_url} (logs in {work})")
        print("\nCtrl-C stops everything and puts the machine back as it was.", flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        say("stopping")
        for piece in reversed(stopping):
            piece.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
