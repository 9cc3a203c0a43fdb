"""Benchmark: 500 Ingestions created at once, on the local control plane.

    .venv/bin/python bench/operator_scale.py [--ingestions 500] [--idle 30]

Starts a real kube-apiserver + controller-manager (the test platform's), installs the CRD
and runs `kingest operator` as a subprocess watching one namespace. Then it creates the
Ingestions from 8 client threads as fast as the API server takes them and measures, from each
Ingestion's creation (when its create call returned):

- time until its Job exists (seen on a Job watch);
- time until its status is final (phase Succeeded), while a minimal kubelet stand-in marks
  each run's Pod Succeeded with a runner result as its termination message as soon as the
  Job controller creates it (the data path is not what this measures);

and the operator's peak RSS over the whole run and its CPU use over `--idle` seconds of
idling with every Ingestion in place. Targets (issue 5): p99 to Job creation < 5 s, idle CPU
near zero, RSS < 250 MB. Results also go to `bench/results/operator_scale.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client as k8s
from kubernetes.watch.watch import iter_resp_lines

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.platform.kube import ControlPlane  # noqa: E402
from tests.platform.processes import ManagedProcess  # noqa: E402

NAMESPACE = "bench"
SPEC = {
    "source": {"uri": "duckdb:////data/records.db", "table": "public.users"},
    "destination": {"uri": "s3://?endpoint_url=http://127.0.0.1:9", "table": "bucket/records"},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Recorder:
    """First time (monotonic) each named thing was seen."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.lock = threading.Lock()

    def mark(self, name: str) -> None:
        with self.lock:
            self.times.setdefault(name, time.monotonic())


def follow(
    list_objects: Callable[..., Any],
    *args: Any,
    handle: Callable[[str, dict[str, Any]], None],
    stop: threading.Event,
) -> None:
    """Call `handle(type, object)` for each listed object, then for each change, as plain JSON.

    One watch, resumed from the last resourceVersion seen: a watch started afresh lists every
    object again, and building the client's model objects costs more CPU than the operator
    spends per object; either would compete with the operator for this machine's two cores.
    """
    version = None
    while not stop.is_set():
        resume = {"resource_version": version} if version else {}
        reply = list_objects(*args, watch=True, timeout_seconds=5, _preload_content=False, **resume)
        try:
            for line in iter_resp_lines(reply):
                event = json.loads(line)
                if event["type"] == "ERROR":  # 410 Gone: the version expired; list again
                    version = None
                    break
                version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    handle(event["type"], event["object"])
        finally:
            reply.release_conn()


def watch_jobs(api: k8s.ApiClient, jobs: Recorder, stop: threading.Event) -> None:
    def seen(_: str, job: dict[str, Any]) -> None:
        annotations = job["metadata"].get("annotations") or {}
        if "kingest.io/ingestion" in annotations:
            jobs.mark(annotations["kingest.io/ingestion"])

    follow(k8s.BatchV1Api(api).list_namespaced_job, NAMESPACE, handle=seen, stop=stop)


def complete_pods(api: k8s.ApiClient, stop: threading.Event) -> None:
    """Play the kubelet: every new Pod of a run succeeds at once with a runner result."""
    core = k8s.CoreV1Api(api)
    done: set[str] = set()

    def finish(_: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if name in done or (pod.get("status") or {}).get("phase", "Pending") != "Pending":
            return
        done.add(name)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = {"status": "succeeded", "load_id": f"{time.time()}", "rows": 1}
        terminated = {
            "exitCode": 0,
            "reason": "Completed",
            "message": json.dumps(result),
            "startedAt": now,
            "finishedAt": now,
        }
        container = {
            "name": "runner",
            "image": "kingest",
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "state": {"terminated": terminated},
        }
        body = {"status": {"phase": "Succeeded", "containerStatuses": [container]}}
        core.patch_namespaced_pod_status(name, NAMESPACE, body, _preload_content=False).read()

    follow(core.list_namespaced_pod, NAMESPACE, handle=finish, stop=stop)


def watch_final(api: k8s.ApiClient, final: Recorder, stop: threading.Event) -> None:
    def seen(_: str, ingestion: dict[str, Any]) -> None:
        if (ingestion.get("status") or {}).get("phase") == "Succeeded":
            final.mark(ingestion["metadata"]["name"])

    custom = k8s.CustomObjectsApi(api)
    follow(
        custom.list_namespaced_custom_object,
        *("kingest.io", "v1alpha1", NAMESPACE, "ingestions"),
        handle=seen,
        stop=stop,
    )


def sample(process: psutil.Process, peak: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], process.memory_info().rss)
        except psutil.Error:
            return
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ingestions", type=int, default=500, help="Ingestions created at once (default 500)"
    )
    parser.add_argument(
        "--idle", type=float, default=30.0, help="seconds of idle measurement (default 30)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kingest-bench-"))
    kube = ControlPlane(work / "kube")
    stop = threading.Event()
    operator: ManagedProcess | None = None
    try:
        api = kube.api_client()
        kube.kubectl("apply", "-f", str(REPO / "crds"))
        kube.kubectl("wait", "--for=condition=Established", "crd/ingestions.kingest.io")
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        operator = ManagedProcess(
            "operator",
            [str(Path(sys.executable).parent / "kingest"), "operator", "-n", NAMESPACE],
            work,
            # PYTHONPATH passed on: another checkout's operator can be measured the same way.
            env={
                **kube.env(),
                **{k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ},
            },
        )
        time.sleep(5)  # kopf's start-up: imports, API discovery, the first (empty) listing
        process = psutil.Process(operator.proc.pid)
        peak = [0.0]
        jobs, final = Recorder(), Recorder()
        for target, extra in (
            (watch_jobs, (jobs,)),
            (watch_final, (final,)),
            (complete_pods, ()),
        ):
            threading.Thread(
                target=target, args=(kube.api_client(), *extra, stop), daemon=True
            ).start()
        threading.Thread(target=sample, args=(process, peak, stop), daemon=True).start()
        time.sleep(1)

        created: dict[str, float] = {}
        custom = k8s.CustomObjectsApi(api)

        def create(i: int) -> None:
            name = f"ingestion-{i:04d}"
            body = {
                "apiVersion": "kingest.io/v1alpha1",
                "kind": "Ingestion",
                "metadata": {"name": name},
                # Distinct specs: the operator caches the check of a spec it has seen.
                "spec": SPEC | {"destination": {**SPEC["destination"], "table": f"b/r{i}"}},
            }
            custom.create_namespaced_custom_object(
                "kingest.io", "v1alpha1", NAMESPACE, "ingestions", body
            )
            created[name] = time.monotonic()

        print(f"creating {args.ingestions} Ingestions", flush=True)
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(args.ingestions)))
        print(f"  created in {time.monotonic() - started:.1f} s", flush=True)

        deadline = time.monotonic() + 600
        cpu_at_start = sum(process.cpu_times()[:2])
        cpu_until_jobs = None
        while len(final.times) < args.ingestions and time.monotonic() < deadline:
            if cpu_until_jobs is None and len(jobs.times) >= args.ingestions:
                cpu_until_jobs = sum(process.cpu_times()[:2]) - cpu_at_start
            time.sleep(0.5)
        to_job = [jobs.times[n] - created[n] for n in created if n in jobs.times]
        to_final = [final.times[n] - created[n] for n in created if n in final.times]

        cpu_before = process.cpu_times()
        time.sleep(args.idle)
        cpu_after = process.cpu_times()
        idle_cpu = (
            (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system)
            / args.idle
            * 100
        )
        results: dict[str, Any] = {
            "ingestions": args.ingestions,
            "jobs_created": len(to_job),
            "final": len(to_final),
            "to_job_p50_s": round(statistics.median(to_job), 3) if to_job else None,
            "to_job_p99_s": round(percentile(to_job, 0.99), 3) if to_job else None,
            "to_final_p50_s": round(statistics.median(to_final), 3) if to_final else None,
            "to_final_p99_s": round(percentile(to_final, 0.99), 3) if to_final else None,
            # Operator CPU spent until every Job existed: how much of the wait is its own.
            "operator_cpu_s_until_all_jobs": round(cpu_until_jobs, 1)
            if cpu_until_jobs is not None
            else None,
            "operator_peak_rss_mb": round(peak[0] / 2**20, 1),
            "operator_idle_cpu_percent": round(idle_cpu, 2),
        }
        print(json.dumps(results, indent=2))
        (REPO / "bench" / "results").mkdir(exist_ok=True)
        (REPO / "bench" / "results" / "operator_scale.json").write_text(
            json.dumps(results, indent=2) + "\n"
        )
        ok = (
            len(to_final) == args.ingestions
            and results["to_job_p99_s"] is not None
            and results["to_job_p99_s"] < 5
            and results["operator_peak_rss_mb"] < 250
        )
        print("targets met" if ok else "TARGETS MISSED", flush=True)
        if operator and not operator.alive():
            print(operator.log_tail())
        return 0 if ok else 1
    finally:
        stop.set()
        if operator is not None:
            operator.stop()
        kube.stop()


if __name__ == "__main__":
    sys.exit(main())
