"""Hourly incremental syncs end to end, on the test clock, their slots run on the node (the
kingest image against the S3 server):

- `examples/scheduled-s3-to-duckdb.yaml`: new files arrive between slots; every file lands in
  DuckDB exactly once;
- `examples/scheduled-duckdb-to-s3.yaml`: new and updated rows arrive between slots; the cursor
  kept in S3 makes every row version land exactly once, and the status shows it."""

from __future__ import annotations

import io
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
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


def slot_runner(clocked: ClockedOperator, ingestions: Ingestions, name: str) -> Any:
    """run_slot(n): move the clock past the n-th slot after the first; returns its lastRun."""
    first = at(scheduled(ingestions, name)["nextRunTime"])

    def run_slot(n: int) -> dict[str, Any]:
        slot = first + timedelta(hours=n)
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
        return done

    return run_slot


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
    run_slot = slot_runner(clocked, ingestions, docs["Ingestion"]["metadata"]["name"])
    runs = [run_slot(0)["lastRun"]]
    s3.put_object(Bucket=bucket, Key="events/1000.csv", Body=events_csv(200, 4))
    runs.append(run_slot(1)["lastRun"])
    s3.put_object(Bucket=bucket, Key="events/1100.csv", Body=events_csv(300, 1))
    s3.put_object(Bucket=bucket, Key="events/1130.csv", Body=events_csv(400, 2))
    runs.append(run_slot(2)["lastRun"])

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


def upsert_users(db: Path, rows: list[tuple[int, str]]) -> None:
    """Rows (id, updated_at) written as a source application would: new ids inserted, known
    ids updated in place."""
    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE TABLE IF NOT EXISTS public.users "
            "(id INTEGER PRIMARY KEY, email VARCHAR, updated_at TIMESTAMP)"
        )
        for id_, updated_at in rows:
            con.execute(
                "INSERT OR REPLACE INTO public.users VALUES (?, ?, ?)",
                [id_, f"user{id_}@example.com", datetime.fromisoformat(updated_at)],
            )


def exported_rows(s3: S3Server, bucket: str) -> list[tuple[int, str, str]]:
    """(id, email, updated_at) of every row in the exported Parquet files."""
    client = s3.client()
    listing = client.list_objects_v2(Bucket=bucket, Prefix="records/users/")
    rows = []
    for item in listing.get("Contents", []):
        body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for row in pq.read_table(io.BytesIO(body)).to_pylist():
            rows.append((row["id"], row["email"], row["updated_at"].isoformat(sep=" ")))
    return sorted(rows)


def test_three_hourly_exports_with_a_cursor_load_each_row_version_once(
    kube: Cluster,
    namespace: str,
    clocked: ClockedOperator,
    ingestions: Ingestions,
    s3_server: S3Server,
    bucket: str,
) -> None:
    db = kube.claim(namespace, "duckdb-data") / "records.db"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA public")
    upsert_users(db, [(1, "2026-01-01 08:00:00"), (2, "2026-01-01 08:30:00")])
    docs = example("scheduled-duckdb-to-s3.yaml", s3_server, bucket)
    apply(kube, namespace, docs["Secret"], docs["Ingestion"])
    run_slot = slot_runner(clocked, ingestions, docs["Ingestion"]["metadata"]["name"])

    first = run_slot(0)
    # A new row at the cursor's very value (not loaded yet), a new one after it, an update.
    upsert_users(db, [(3, "2026-01-01 08:30:00"), (4, "2026-01-01 09:10:00")])
    upsert_users(db, [(1, "2026-01-01 09:20:00")])
    second = run_slot(1)
    third = run_slot(2)  # nothing new
    upsert_users(db, [(5, "2026-01-01 10:00:00")])
    fourth = run_slot(3)

    assert [s["lastRun"]["rows"] for s in (first, second, third, fourth)] == [2, 3, 0, 1]
    assert [s["cursor"]["value"] for s in (first, second, third, fourth)] == [
        "2026-01-01T08:30:00",
        "2026-01-01T09:20:00",
        "2026-01-01T09:20:00",
        "2026-01-01T10:00:00",
    ]
    assert second["lastRun"]["cursor"]["previous"] == "2026-01-01T08:30:00"
    exported = exported_rows(s3_server, bucket)
    assert [(r[0], r[2]) for r in exported] == [
        (1, "2026-01-01 08:00:00"),
        (1, "2026-01-01 09:20:00"),
        (2, "2026-01-01 08:30:00"),
        (3, "2026-01-01 08:30:00"),
        (4, "2026-01-01 09:10:00"),
        (5, "2026-01-01 10:00:00"),
    ]
    # Masked before anything was written: sha256 hex, never the address.
    assert all(len(r[1]) == 64 and "@" not in r[1] for r in exported)
    wide = subprocess.run(
        ["kubectl", "get", "ingestion", "users-hourly", "-n", namespace, "-o", "wide"],
        env=kube.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CURSOR" in wide and "2026-01-01T10:00:00" in wide
