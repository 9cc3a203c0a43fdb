"""Incremental file syncs from S3 into DuckDB: each file version loads exactly once.

An append run loads only objects that are new or changed since the table last loaded them;
the record of loaded files lives in the destination (``<schema>._kingest_loaded_files``) and
commits with the rows. Also ingestr's opt-in mode, ``--incremental-key
_ingestr_source_file_modified_at`` with an interval on the object's modification time.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.utils
import pyarrow as pa
import pytest

from kingest.runner.duckdb_destination import DuckDBDestination
from kingest.runner.errors import DestinationError
from kingest.runner.interfaces import LoadOptions, SourceFile, SourceStream, Strategy
from kingest.runner.s3_client import response_timestamp
from kingest.runner.uri import DuckDBUri, parse_uri
from tests.platform.s3 import S3Server
from tests.runner.test_s3_to_duckdb import KINGEST, csv_rows, load, put, query, run

APPEND = ("--incremental-strategy", "append")


def ids(db: Path) -> list[int]:
    return [row[0] for row in query(db, "SELECT id FROM raw.t ORDER BY id")]


def ledger(db: Path) -> dict[str, str]:
    """What the destination records as loaded: file URL -> ETag."""
    return dict(query(db, "SELECT file_url, etag FROM raw._kingest_loaded_files"))


def etags(s3: S3Server, bucket: str, prefix: str) -> dict[str, str]:
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    return {f"s3://{bucket}/{o['Key']}": o["ETag"].strip('"') for o in listing}


def test_three_runs_with_new_files_in_between_load_each_file_once(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "inc.duckdb"
    argv = [*load(s3_server, bucket, db, "in/*.csv"), *APPEND]
    put(s3_server, bucket, "in/a.csv", csv_rows(2, start=0))
    put(s3_server, bucket, "in/b.csv", csv_rows(3, start=10))
    first = run(capsys, *argv)[1]
    put(s3_server, bucket, "in/c.csv", csv_rows(4, start=20))
    second = run(capsys, *argv)[1]
    put(s3_server, bucket, "in/d.csv", csv_rows(1, start=30))
    put(s3_server, bucket, "in/e.csv", csv_rows(2, start=40))
    third = run(capsys, *argv)[1]

    assert [(r["rows"], r["files"], r["files_skipped"]) for r in (first, second, third)] == [
        (5, 2, 0),
        (4, 1, 2),
        (3, 2, 3),
    ]
    assert ids(db) == [0, 1, 10, 11, 12, 20, 21, 22, 23, 30, 40, 41]
    assert ledger(db) == etags(s3_server, bucket, "in/")
    loaded_by = dict(query(db, "SELECT file_url, _dlt_load_id FROM raw._kingest_loaded_files"))
    assert loaded_by[f"s3://{bucket}/in/c.csv"] == second["load_id"]
    assert loaded_by[f"s3://{bucket}/in/e.csv"] == third["load_id"]


def test_a_run_with_nothing_new_loads_no_rows_and_commits_only_its_bookkeeping(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "same.duckdb"
    argv = [*load(s3_server, bucket, db, "same/*.csv"), *APPEND]
    put(s3_server, bucket, "same/a.csv", csv_rows(3))
    assert run(capsys, *argv)[0] == 0
    # Uploading identical bytes again makes no new version: the ETag is the content's.
    put(s3_server, bucket, "same/a.csv", csv_rows(3))

    code, result, out = run(capsys, *argv)

    assert code == 0, out
    assert (result["rows"], result["files"], result["files_skipped"]) == (0, 0, 1)
    assert "1 matched file(s) skipped" in out
    assert ids(db) == [0, 1, 2]
    loads = [row[0] for row in query(db, "SELECT load_id FROM raw._dlt_loads ORDER BY load_id")]
    assert loads[-1] == result["load_id"] and len(loads) == 2


def test_a_changed_object_is_loaded_again(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "changed.duckdb"
    argv = [*load(s3_server, bucket, db, "ch/*.csv"), *APPEND]
    put(s3_server, bucket, "ch/a.csv", csv_rows(2, start=0))
    put(s3_server, bucket, "ch/b.csv", csv_rows(1, start=10))
    assert run(capsys, *argv)[0] == 0
    put(s3_server, bucket, "ch/a.csv", csv_rows(3, start=100))

    code, result, _ = run(capsys, *argv)

    assert code == 0
    assert (result["rows"], result["files"], result["files_skipped"]) == (3, 1, 1)
    assert ids(db) == [0, 1, 10, 100, 101, 102]
    assert ledger(db) == etags(s3_server, bucket, "ch/")


def test_a_run_killed_mid_load_and_retried_loads_each_file_once(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "killed.duckdb"
    argv = [*load(s3_server, bucket, db, "k/*.csv"), *APPEND]
    put(s3_server, bucket, "k/a.csv", csv_rows(2, start=0))
    put(s3_server, bucket, "k/b.csv", csv_rows(3, start=10))
    assert run(capsys, *argv)[0] == 0
    before = ids(db), query(db, "SELECT * FROM raw._dlt_loads"), ledger(db)
    put(s3_server, bucket, "k/c.csv", csv_rows(4, start=20))
    put(s3_server, bucket, "k/d.csv", csv_rows(1, start=30))

    # d.csv hangs: its schema is read first (one GET), then its data; the run is killed
    # while waiting for the data, with c's rows already inside the open transaction.
    s3_server.faults.add("delay", method="GET", path_regex=r"/k/d\.csv", delay_s=5, times=None)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    victim = subprocess.Popen([KINGEST, "ingest", *argv], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(r["hits"] for r in s3_server.faults.rules()) < 2:
        time.sleep(0.05)
    assert sum(r["hits"] for r in s3_server.faults.rules()) >= 2, "the run never read d.csv"
    victim.kill()
    victim.wait()
    s3_server.faults.clear()
    assert (ids(db), query(db, "SELECT * FROM raw._dlt_loads"), ledger(db)) == before

    code, result, _ = run(capsys, *argv)

    assert code == 0
    assert (result["rows"], result["files"], result["files_skipped"]) == (5, 2, 2)
    assert ids(db) == [0, 1, 10, 11, 12, 20, 21, 22, 23, 30]
    assert ledger(db) == etags(s3_server, bucket, "k/")


def test_full_refresh_starts_over(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "refresh.duckdb"
    argv = [*load(s3_server, bucket, db, "fr/*.csv"), *APPEND]
    put(s3_server, bucket, "fr/a.csv", csv_rows(2, start=0))
    assert run(capsys, *argv)[0] == 0
    put(s3_server, bucket, "fr/b.csv", csv_rows(1, start=10))
    assert run(capsys, *argv)[0] == 0

    code, result, _ = run(capsys, *argv, "--full-refresh")

    assert code == 0
    assert (result["rows"], result["files"], result["files_skipped"]) == (3, 2, 0)
    assert ids(db) == [0, 1, 10]
    assert set(query(db, "SELECT _dlt_load_id FROM raw._kingest_loaded_files")) == {
        (result["load_id"],)
    }
    assert ledger(db) == etags(s3_server, bucket, "fr/")


def test_replace_records_its_files_so_a_following_append_loads_only_new_ones(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "rep.duckdb"
    put(s3_server, bucket, "rp/a.csv", csv_rows(2, start=0))
    put(s3_server, bucket, "rp/b.csv", csv_rows(2, start=10))
    assert run(capsys, *load(s3_server, bucket, db, "rp/*.csv"))[0] == 0
    s3_server.client().delete_object(Bucket=bucket, Key="rp/b.csv")
    assert run(capsys, *load(s3_server, bucket, db, "rp/*.csv"))[0] == 0
    assert ledger(db) == etags(s3_server, bucket, "rp/")  # b is gone from table and record
    put(s3_server, bucket, "rp/c.csv", csv_rows(1, start=20))

    result = run(capsys, *load(s3_server, bucket, db, "rp/*.csv"), *APPEND)[1]

    assert (result["rows"], result["files_skipped"]) == (1, 1)
    assert ids(db) == [0, 1, 20]


def test_a_dropped_table_loads_everything_again(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "dropped.duckdb"
    argv = [*load(s3_server, bucket, db, "dr/*.csv"), *APPEND]
    put(s3_server, bucket, "dr/a.csv", csv_rows(2))
    assert run(capsys, *argv)[0] == 0
    import duckdb

    with duckdb.connect(str(db)) as con:
        con.execute("DROP TABLE raw.t")

    code, result, _ = run(capsys, *argv)

    assert code == 0 and result["rows"] == 2 and ids(db) == [0, 1]


def test_an_append_refuses_a_file_another_run_recorded_meanwhile(tmp_path: Path) -> None:
    """The record is checked again inside the transaction: two runs racing never both load."""
    db = tmp_path / "race.duckdb"
    options = LoadOptions(strategy=Strategy.APPEND)
    uri = DuckDBUri.from_parsed(parse_uri(f"duckdb:///{db}", "destination", {}))
    destination = DuckDBDestination(uri, "raw.t", options)
    version = SourceFile("s3://b/x.csv", "etag-1", 10, None)

    def stream() -> SourceStream:
        batch = pa.record_batch({"id": pa.array([1], pa.int64())})
        reader = pa.RecordBatchReader.from_batches(batch.schema, iter([batch]))
        return SourceStream(reader=reader, name="t", files=[version])

    destination.load(stream(), "1.0")  # the other run, committed after this one asked
    before = query(db, "SELECT * FROM raw.t"), query(db, "SELECT * FROM raw._dlt_loads")

    with pytest.raises(DestinationError, match=r"s3://b/x\.csv was loaded into raw\.t by another"):
        destination.load(stream(), "2.0")

    assert (query(db, "SELECT * FROM raw.t"), query(db, "SELECT * FROM raw._dlt_loads")) == before


def _modified(s3: S3Server, bucket: str, key: str) -> datetime:
    return s3.client().list_objects_v2(Bucket=bucket, Prefix=key)["Contents"][0]["LastModified"]


def _put_a_second_apart(s3: S3Server, bucket: str, files: dict[str, bytes]) -> None:
    for index, (key, body) in enumerate(files.items()):
        if index:
            time.sleep(1.1)  # S3 reports LastModified to the second
        put(s3, bucket, key, body)


def test_modified_at_mode_selects_objects_by_time_and_adds_path_and_time(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {f"mt/{n}.jsonl": f'{{"id": {i}}}\n'.encode() for i, n in enumerate("abc")}
    _put_a_second_apart(s3_server, bucket, files)
    a, b, c = (_modified(s3_server, bucket, key) for key in files)
    db = tmp_path / "mt.duckdb"
    key = ("--incremental-key", "_ingestr_source_file_modified_at")
    argv = load(s3_server, bucket, db, "mt/*.jsonl")

    # [a, b]: both ends included, as for row intervals (and ingestr's); c is after it.
    code, result, out = run(capsys, *argv, *key, "--interval-start", a.isoformat(),
                            "--interval-end", b.isoformat(), *APPEND)  # fmt: skip

    assert code == 0, out
    assert (result["files"], result["files_skipped"]) == (2, 1)
    rows = query(db, "SELECT id, _ingestr_source_file_path, _ingestr_source_file_modified_at "
                     "FROM raw.t ORDER BY id")  # fmt: skip
    assert rows == [(0, f"s3://{bucket}/mt/a.jsonl", a), (1, f"s3://{bucket}/mt/b.jsonl", b)]

    # The next window holds c only; the one after it nothing: success, the table untouched.
    later = run(capsys, *argv, *key, "--interval-start", c.isoformat(), *APPEND)[1]
    assert (later["rows"], later["files"]) == (1, 1)
    empty = run(capsys, *argv, *key, "--interval-start", "2999-01-01", *APPEND)[1]
    assert (empty["status"], empty["rows"], empty["files_skipped"]) == ("succeeded", 0, 3)
    assert ids(db) == [0, 1, 2]


def test_modified_at_mode_with_nothing_in_the_interval_creates_no_database(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "none/a.csv", csv_rows(1))
    db = tmp_path / "none.duckdb"
    argv = [*load(s3_server, bucket, db, "none/*.csv"), "--incremental-key",
            "_ingestr_source_file_modified_at", "--interval-end", "2001-01-01"]  # fmt: skip

    code, result, out = run(capsys, *argv)

    assert code == 0, out
    assert result["load_id"] is None and "Nothing to load" in out
    assert not db.exists()


def test_a_bad_interval_for_modified_at_is_a_usage_error(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*load(s3_server, bucket, tmp_path / "x.duckdb", "a.csv"), "--incremental-key",
            "_ingestr_source_file_modified_at", "--interval-start", "yesterday"]  # fmt: skip
    code, result, _ = run(capsys, *argv)
    assert code == 2 and "--interval-start 'yesterday'" in result["error"]


def test_the_result_file_reports_skipped_files(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "rf.duckdb"
    put(s3_server, bucket, "rf/a.csv", csv_rows(1))
    argv = [*load(s3_server, bucket, db, "rf/*.csv"), *APPEND]
    assert run(capsys, *argv)[0] == 0
    result_file = tmp_path / "result.json"
    code = run(capsys, *argv, env={"KINGEST_RESULT_FILE": str(result_file)})[0]
    written: dict[str, Any] = json.loads(result_file.read_text())
    assert code == 0 and (written["files"], written["files_skipped"]) == (0, 1)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-25T10:29:45.000Z",
        "2026-11-25T10:29:45Z",
        "2026-11-25T10:29:45.123456+02:00",
        "2026-11-25T10:29:45",
        "Wed, 25 Nov 2026 10:29:45 GMT",
        "1795602585",
        1795602585,
    ],
)
def test_listed_timestamps_parse_to_the_instants_botocore_gives(value: str | int) -> None:
    """The listing's fast timestamp parser agrees with botocore's own on every form S3 uses."""
    expected = botocore.utils.parse_timestamp(value)
    parsed = response_timestamp(value)
    assert (parsed, parsed.utcoffset()) == (expected, expected.utcoffset())


@pytest.mark.parametrize(
    "options",
    [
        LoadOptions(strategy=Strategy.APPEND),
        LoadOptions(strategy=Strategy.MERGE, primary_key=("id",)),
    ],
    ids=["append", "merge"],
)
def test_a_first_load_of_twenty_thousand_tiny_files_fits_the_memory_limit(
    tmp_path: Path, options: LoadOptions
) -> None:
    """One 3-row batch per file, as a first sync of many small objects streams them: DuckDB
    used up its 256 MB appending 20,000 tiny batches (in insertion order, as merge needs)
    before the destination gathered them."""
    db = tmp_path / "tiny.duckdb"
    uri = DuckDBUri.from_parsed(parse_uri(f"duckdb:///{db}", "destination", {}))
    destination = DuckDBDestination(uri, "raw.t", options)
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("amount", pa.float64())])
    files = 20_000

    def batches() -> Iterator[pa.RecordBatch]:
        for n in range(files):
            ids = [3 * n, 3 * n + 1, 3 * n + 2]
            yield pa.record_batch([ids, [f"item {i}" for i in ids], [n + 0.5] * 3], schema=schema)

    versions = [SourceFile(f"s3://b/{n}.csv", f"etag-{n}", 40, None) for n in range(files)]
    reader = pa.RecordBatchReader.from_batches(schema, batches())
    summary = destination.load(SourceStream(reader=reader, name="t", files=versions), "1.0")

    assert summary.rows == 3 * files
    assert query(db, "SELECT count(*), count(DISTINCT id), sum(id) FROM raw.t") == [
        (3 * files, 3 * files, (3 * files - 1) * 3 * files // 2)
    ]
    assert query(db, "SELECT count(*) FROM raw._kingest_loaded_files") == [(files,)]
