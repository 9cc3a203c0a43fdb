"""Hourly incremental syncs end to end: `examples/scheduled-s3-to-duckdb.yaml` on the test
clock, its slots run on the node (the kingest image against the S3 server), new files
arriving between slots. Every file lands in DuckDB exactly once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import duckdb
import pytest

from tests.operator.conftest import ClockedOperator, Ingestions
from tests.operator.test_operator_runs import apply, example
from tests.operator.test_operator_schedule import at, scheduled
from tests.platform.cluster import Cluster
from tests.platform.s3 import S3Server

pytestmark = pytest.mark.cluster


def events_csv(first_id: int, rows: int) -> bytes:
    lines = "".join(f"{i},click\n" for i in range(first_id, first_id + rows))
    return f"id,kind\n{lines}".encode()


def test_three_hourly_runs_with_new_files_in_between_load_each_file_once(
    kube: Cluster,
    namespace: str,
    clocked: ClockedOperator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    docs = example("scheduled-s3-to-duckdb.yaml", s3_server, bucket)
    s3 = s3_server.client()
    s3.put_object(Bucket=bucket, Key="events/0900.csv", Body=events_csv(0, 3))
    s3.put_object(Bucket=bucket, Key="events/0930.csv", Body=events_csv(100, 2))
    volume = kube.volume(namespace, "duckdb-data")  # for the example's own claim
    apply(kube, namespace, docs["Secret"], docs["PersistentVolumeClaim"], docs["Ingestion"])
    name = docs["Ingestion"]["metadata"]["name"]
    first = at(scheduled(ingestions, name)["nextRunTime"])

    def run_slot(hour: int) -> dict[str, Any]:
        slot = first + timedelta(hours=hour)
        clocked.set_clock(slot + timedelta(seconds=1))
        done = ingestions.wait(
            name,
            lambda s: (
                s.get("lastScheduleTime") == slot.strftime("%Y-%m-%dT%H:%M:%SZ")
                and s.get("phase") in ("Succeeded", "Failed")
            ),
            timeout=90,
        )["status"]
        assert done["phase"] == "Succeeded", done
        return done["lastRun"]

    runs = [run_slot(0)]
    s3.put_object(Bucket=bucket, Key="events/1000.csv", Body=events_csv(200, 4))
    runs.append(run_slot(1))
    s3.put_object(Bucket=bucket, Key="events/1100.csv", Body=events_csv(300, 1))
    s3.put_object(Bucket=bucket, Key="events/1130.csv", Body=events_csv(400, 2))
    runs.append(run_slot(2))

    assert [(r["rows"], r["files"], r.get("filesSkipped")) for r in runs] == [
        (5, 2, 0),
        (4, 1, 2),
        (3, 2, 3),
    ]
    db = volume / "events.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        ids = [row[0] for row in con.execute("SELECT id FROM raw.events ORDER BY id").fetchall()]
        recorded = con.execute("SELECT count(*) FROM raw._kingest_loaded_files").fetchone()
        loads = [
            r[0] for r in con.execute("SELECT load_id FROM raw._dlt_loads ORDER BY 1").fetchall()
        ]
    assert ids == [0, 1, 2, 100, 101, 200, 201, 202, 203, 300, 400, 401]
    assert recorded == (5,)
    assert loads == [r["loadId"] for r in runs]
    assert len({r["job"] for r in runs}) == 3
