"""Scheduled Ingestions end to end: the operator (as its ServiceAccount, on the test clock
`KINGEST_CLOCK_FILE`) fires slots on a real control plane; tests move the clock file instead
of sleeping.

The one place a test plays the kubelet: these tests need runs that stay active until the
test says they end, at a moment it picks on its clock, which no real container gives. So
this module's namespaces keep their Pods off the node (a node selector no node matches,
forced on every Pod by the PodNodeSelector admission plugin), and a test finishes a run's
Pod the way the kubelet would (the Pod status subresource). Real runs of scheduled
Ingestions are in `test_operator_incremental.py`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kubernetes import client as k8s
from prometheus_client.parser import text_string_to_metric_families

from tests.operator.conftest import ClockedOperator, Ingestions

pytestmark = pytest.mark.cluster
NO_NODE = "kingest.io/no-node-matches=true"


@pytest.fixture
def namespace(namespace: str, kube_api: k8s.ApiClient) -> str:
    """The test's namespace, whose Pods are never scheduled (see the module's docstring)."""
    annotation = {"scheduler.alpha.kubernetes.io/node-selector": NO_NODE}
    k8s.CoreV1Api(kube_api).patch_namespace(namespace, {"metadata": {"annotations": annotation}})
    return namespace


def spec(**fields: Any) -> dict[str, Any]:
    """A scheduled S3 -> DuckDB spec (no run of it executes: its Pods are never scheduled)."""
    return {
        "source": {"uri": "s3://?endpoint_url=http://127.0.0.1:9", "table": "my-bucket/*.csv"},
        "destination": {"uri": "duckdb:////data/d.duckdb", "table": "raw.t"},
        "schedule": "@hourly",
        **fields,
    }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def slot_jobs(ingestions: Ingestions) -> list[str]:
    """Names of the scheduled runs' Jobs, oldest slot first."""
    jobs = [
        j
        for j in ingestions.jobs()
        if (j["metadata"].get("annotations") or {}).get("kingest.io/trigger") == "Schedule"
    ]
    return sorted(j["metadata"]["name"] for j in jobs)


def eventually(check: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def condition(status: dict[str, Any], type_: str) -> str | None:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == type_), None)


def minute_of(slot: str) -> str:
    return str(int(at(slot).timestamp()) // 60)


def finish_run(kube_api: k8s.ApiClient, namespace: str, job: str, rows: int = 0) -> None:
    """Play the kubelet: the Job's Pod terminates with the runner's result."""
    core = k8s.CoreV1Api(kube_api)
    pod = eventually(
        lambda: core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items,
        what=f"a Pod of {job}",
    )[0]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = {
        "status": "succeeded",
        "load_id": "1772361600.5",
        "rows": rows,
        "files": 1,
        "bytes": rows * 10,
        "duration_s": 2.5,
    }
    terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(result)}
    body = {
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "runner",
                    "ready": False,
                    "restartCount": 0,
                    "image": pod.spec.containers[0].image,
                    "imageID": "",
                    "state": {"terminated": {**terminated, "startedAt": now, "finishedAt": now}},
                }
            ],
        }
    }
    core.patch_namespaced_pod_status(pod.metadata.name, namespace, body)


def scheduled(ingestions: Ingestions, name: str) -> dict[str, Any]:
    """The Ingestion's status once the operator has given it a next run time."""
    return ingestions.wait(name, lambda s: bool(s.get("nextRunTime")), timeout=30)["status"]


def test_a_slot_fires_once_across_a_restart_and_forbid_skips_while_it_runs(
    clocked: ClockedOperator, ingestions: Ingestions, kube_api: k8s.ApiClient, namespace: str
) -> None:
    ingestions.create("hourly", spec())
    status = scheduled(ingestions, "hourly")
    assert status["phase"] == "Scheduled" and slot_jobs(ingestions) == []
    first = status["nextRunTime"]

    clocked.set_clock(at(first) + timedelta(seconds=1))
    jobs = eventually(lambda: slot_jobs(ingestions), what="the first slot's Job")
    assert len(jobs) == 1 and jobs[0].endswith(minute_of(first))
    ingestions.wait("hourly", lambda s: s.get("lastScheduleTime") == first)

    clocked.kill()
    clocked.start()
    time.sleep(2)  # the restarted operator lists the Ingestion and reconciles it
    assert slot_jobs(ingestions) == jobs

    second = (at(first) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    clocked.set_clock(at(second) + timedelta(seconds=1))
    status = ingestions.wait("hourly", lambda s: s.get("lastSkippedTime") == second)["status"]
    assert status["skippedSlots"] == 1
    assert condition(status, "ConcurrencyForbidden") == "True"
    assert slot_jobs(ingestions) == jobs

    finish_run(kube_api, namespace, jobs[0], rows=4)
    ingestions.wait_for_phase("hourly", "Succeeded")
    third = (at(first) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    clocked.set_clock(at(third) + timedelta(seconds=1))
    jobs = eventually(lambda: len(slot_jobs(ingestions)) == 2 and slot_jobs(ingestions))
    assert jobs[1].endswith(minute_of(third))


def test_replace_stops_the_active_run_for_the_next_slot(
    clocked: ClockedOperator, ingestions: Ingestions
) -> None:
    ingestions.create("replaced", spec(concurrencyPolicy="Replace"))
    first = scheduled(ingestions, "replaced")["nextRunTime"]
    clocked.set_clock(at(first) + timedelta(seconds=1))
    old = eventually(lambda: slot_jobs(ingestions), what="the first slot's Job")
    second = at(first) + timedelta(hours=1)
    clocked.set_clock(second + timedelta(seconds=1))
    jobs = eventually(
        lambda: (names := slot_jobs(ingestions)) and old[0] not in names and names,
        timeout=30,
        what="the first Job replaced",
    )
    assert len(jobs) == 1 and jobs[0].endswith(str(int(second.timestamp()) // 60))


def test_suspend_and_resume_runs_at_most_one_missed_slot(
    clocked: ClockedOperator, ingestions: Ingestions
) -> None:
    ingestions.create("paused", spec())
    first = scheduled(ingestions, "paused")["nextRunTime"]
    ingestions.patch("paused", {"spec": {"suspend": True}})
    status = ingestions.wait_for_phase("paused", "Suspended")["status"]
    assert "nextRunTime" not in status and condition(status, "Suspended") == "True"

    clocked.set_clock(at(first) + timedelta(hours=3, seconds=1))
    time.sleep(1.5)
    assert slot_jobs(ingestions) == []
    ingestions.patch("paused", {"spec": {"suspend": False}})
    jobs = eventually(lambda: slot_jobs(ingestions), what="the catch-up run")
    time.sleep(1.5)
    assert slot_jobs(ingestions) == jobs and len(jobs) == 1
    status = ingestions.get("paused")["status"]
    assert status["skippedSlots"] == 3
    assert condition(status, "Suspended") == "False"


def test_downtime_past_the_starting_deadline_skips_and_within_it_catches_up_once(
    clocked: ClockedOperator, ingestions: Ingestions
) -> None:
    ingestions.create("late", spec(startingDeadlineSeconds=300))
    first = scheduled(ingestions, "late")["nextRunTime"]
    clocked.kill()
    clocked.set_clock(at(first) + timedelta(hours=2, minutes=10))
    clocked.start()
    status = ingestions.wait("late", lambda s: s.get("skippedSlots") == 3)["status"]
    assert slot_jobs(ingestions) == []
    assert status["nextRunTime"] == (at(first) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")

    clocked.kill()
    clocked.set_clock(at(first) + timedelta(hours=5, minutes=2))
    clocked.start()
    jobs = eventually(lambda: slot_jobs(ingestions), what="the one catch-up run")
    time.sleep(1.5)
    assert len(slot_jobs(ingestions)) == 1
    assert jobs[0].endswith(
        minute_of((at(first) + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    )
    assert ingestions.get("late")["status"]["skippedSlots"] == 5


def test_an_invalid_schedule_recovers_and_edits_move_the_next_run(
    clocked: ClockedOperator, ingestions: Ingestions
) -> None:
    ingestions.create("cron", spec(schedule="0 25 * * *"))
    status = ingestions.wait("cron", lambda s: condition(s, "InvalidSchedule") == "True")["status"]
    assert status["phase"] == "Invalid" and "hour: 25 is outside 0-23" in status["message"]
    ingestions.patch("cron", {"spec": {"schedule": "0 6 * * *", "timeZone": "America/New_York"}})
    status = ingestions.wait("cron", lambda s: condition(s, "InvalidSchedule") == "False")["status"]
    morning = at(status["nextRunTime"])
    assert morning.astimezone(ZoneInfo("America/New_York")).hour == 6
    ingestions.patch("cron", {"spec": {"schedule": "30 * * * *"}})
    status = ingestions.wait("cron", lambda s: at(s["nextRunTime"]).minute == 30)["status"]
    assert at(status["nextRunTime"]) - datetime.now(UTC) < timedelta(hours=1, minutes=1)
    assert slot_jobs(ingestions) == []


def test_metrics_show_a_finished_run_and_drop_it_on_delete(
    clocked: ClockedOperator, ingestions: Ingestions, kube_api: k8s.ApiClient, namespace: str
) -> None:
    ingestions.create("measured", spec())
    first = scheduled(ingestions, "measured")["nextRunTime"]
    clocked.set_clock(at(first) + timedelta(seconds=1))
    job = eventually(lambda: slot_jobs(ingestions), what="the slot's Job")[0]
    finish_run(kube_api, namespace, job, rows=42)
    ingestions.wait_for_phase("measured", "Succeeded")
    text = eventually(lambda: (t := clocked.metrics()) and "42" in t and t, what="rows metric")
    measured = series_of(text, namespace, "measured")
    assert measured["kingest_ingestion_rows_loaded_total"] == 42, measured
    assert "kingest_ingestion_next_run_timestamp_seconds" in measured, measured
    ingestions.delete("measured")
    eventually(
        lambda: not series_of(clocked.metrics(), namespace, "measured"), what="series dropped"
    )


def series_of(text: str, namespace: str, name: str) -> dict[str, float]:
    """The samples of one Ingestion in a /metrics text, by name (Prometheus' own parser)."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if (sample.labels.get("namespace"), sample.labels.get("name")) == (namespace, name)
    }


def test_a_fixed_hour_fires_at_the_end_of_a_spring_forward_gap(
    clocked: ClockedOperator, ingestions: Ingestions
) -> None:
    # Berlin skips 02:00-03:00 on 2027-03-28: "30 2 * * *" fires at 03:00 CEST (01:00Z) that
    # day, then at 02:30 CEST (00:30Z). The deadline keeps the months between the
    # Ingestion's real creation and the moved clock from causing a catch-up run.
    clocked.set_clock(at("2027-03-27T12:00:00Z"))
    ingestions.create(
        "berlin",
        spec(schedule="30 2 * * *", timeZone="Europe/Berlin", startingDeadlineSeconds=60),
    )
    status = ingestions.wait("berlin", lambda s: s.get("nextRunTime") == "2027-03-28T01:00:00Z")
    assert slot_jobs(ingestions) == []
    assert status["status"]["skippedSlots"] > 100
    clocked.set_clock(at("2027-03-28T01:00:01Z"))
    jobs = eventually(lambda: slot_jobs(ingestions), what="the slot at the end of the gap")
    assert jobs[0].endswith(minute_of("2027-03-28T01:00:00Z"))
    ingestions.wait("berlin", lambda s: s.get("nextRunTime") == "2027-03-29T00:30:00Z")
