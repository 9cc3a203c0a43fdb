"""ingestr's stream-shaping flags end to end: --mask, --schema-naming, --schema-contract,
--yield-limit/--page-size, --progress json, --pipelines-dir and _dlt_id, from the platform's S3
server into real DuckDB files and from DuckDB files to S3."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from kingest.runner.cli import ingest
from tests.platform.s3 import S3Server

KINGEST = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kingest")

PEOPLE = (
    b"id,First Name,email,ssn,salary\n"
    b"1,Ann,ann.smith@example.com,123-45-6789,52300\n"
    b"2,Bob,bo@example.org,987-65-4321,48000\n"
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    """`kingest ingest` in-process: exit code, result JSON, all output."""
    code = ingest(list(argv), environ={})
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), out + err


def s3_to_duckdb(s3: S3Server, bucket: str, key: str, db: Path, *extra: str) -> list[str]:
    return [
        "--source-uri", s3.uri(), "--source-table", f"{bucket}/{key}",
        "--dest-uri", f"duckdb:///{db}", "--dest-table", "raw.t", *extra,
    ]  # fmt: skip


def put(s3: S3Server, bucket: str, key: str, body: bytes) -> None:
    s3.client().put_object(Bucket=bucket, Key=key, Body=body)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def columns(db: Path) -> list[str]:
    sql = ("SELECT column_name FROM information_schema.columns WHERE table_name = 't' "
           "ORDER BY ordinal_position")  # fmt: skip
    return [r[0] for r in query(db, sql)]


# -- S3 -> DuckDB --------------------------------------------------------------------------


def test_masks_apply_before_rows_reach_duckdb(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "people.csv", PEOPLE)
    db = tmp_path / "d.duckdb"
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "people.csv", db,
        "--mask", "email:email", "--mask", "ssn:ssn,salary:round:5000", "--mask", "first_name:hash",
    ))  # fmt: skip
    assert code == 0, result
    rows = query(db, "SELECT email, ssn, salary, first_name FROM raw.t ORDER BY id")
    assert [r[:3] for r in rows] == [
        ("a*******h@example.com", "***-**-6789", 50000),
        ("**@example.org", "***-**-4321", 50000),
    ]
    assert len(rows[0][3]) == 64 and "Ann" not in str(query(db, "SELECT * FROM raw.t"))


def test_a_mask_on_a_missing_column_fails_before_the_database_exists(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "people.csv", PEOPLE)
    db = tmp_path / "d.duckdb"
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "people.csv", db, "--mask", "phone:phone"))  # fmt: skip
    assert code == 2 and result["reason"] == "UsageError"
    assert "--mask: 'phone' not a column of the source" in result["error"]
    assert not db.exists()
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "people.csv", db, "--mask", "email:scramble"))  # fmt: skip
    assert code == 2 and "unknown algorithm 'scramble' for column 'email'" in result["error"]
    code, result, output = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "people.csv", db, "--mask", "phone:hmac:TOPSECRET-KEY"))  # fmt: skip
    assert code == 2 and "'phone'" in result["error"] and "TOPSECRET" not in output


def test_names_are_snake_case_by_default_and_direct_keeps_them(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "n.csv", b"ID,First Name,userId,first_name\n1,Ann,7,x\n")
    snake, direct = tmp_path / "snake.duckdb", tmp_path / "direct.duckdb"
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "n.csv", snake, "--primary-key", "ID",
        "--incremental-strategy", "merge"))  # fmt: skip
    assert code == 0, result
    assert columns(snake) == ["id", "first_name", "user_id", "first_name_1", "_dlt_load_id",
                              "_dlt_id"]  # fmt: skip
    assert query(snake, "SELECT id, first_name, first_name_1 FROM raw.t") == [(1, "Ann", "x")]
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "n.csv", direct, "--schema-naming", "direct"))  # fmt: skip
    assert code == 0, result
    assert columns(direct)[:4] == ["ID", "First Name", "userId", "first_name"]


def test_keys_name_source_columns_and_apply_to_the_renamed_ones(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "e.csv", b"Event Id,Created At\n1,2024-01-01\n2,2024-02-01\n")
    db = tmp_path / "d.duckdb"
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "e.csv", db, "--incremental-key", "Created At",
        "--interval-start", "2024-01-15", "--columns", "Event Id:text"))  # fmt: skip
    assert code == 0, result
    assert query(db, "SELECT event_id, created_at FROM raw.t") == [("2", date(2024, 2, 1))]


def test_every_row_gets_its_own_dlt_id_in_dlts_format(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "a.csv", b"id\n" + b"".join(b"%d\n" % i for i in range(5000)))
    db = tmp_path / "d.duckdb"
    for _ in range(2):
        code, result, _ = run(capsys, *s3_to_duckdb(
            s3_server, bucket, "a.csv", db, "--incremental-strategy", "append",
            "--full-refresh"))  # fmt: skip
        assert code == 0, result
    first = {r[0] for r in query(db, "SELECT _dlt_id FROM raw.t")}
    code, result, _ = run(capsys, *s3_to_duckdb(s3_server, bucket, "a.csv", db))
    ids = [r[0] for r in query(db, "SELECT _dlt_id FROM raw.t")]
    assert len(ids) == len(set(ids)) == 5000 and not first & set(ids)
    for value in ids[:100]:
        assert len(value) == 14 and len(base64.b64decode(value + "==")) == 10


def test_dlt_ids_are_stored_uncompressed_in_a_new_table(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Random ids gain nothing from DuckDB's string compression, which costs 3x their insert.
    put(s3_server, bucket, "a.csv", b"id\n" + b"".join(b"%d\n" % i for i in range(5000)))
    for strategy in ("replace", "merge"):
        db = tmp_path / f"{strategy}.duckdb"
        code, result, _ = run(capsys, *s3_to_duckdb(
            s3_server, bucket, "a.csv", db, "--incremental-strategy", strategy,
            "--primary-key", "id"))  # fmt: skip
        assert code == 0, result
        methods = query(
            db,
            "SELECT DISTINCT compression FROM pragma_storage_info('raw.t') "
            "WHERE column_name = '_dlt_id' AND segment_type = 'VARCHAR'",
        )
        assert methods == [("Uncompressed",)], strategy
        assert query(db, "SELECT count(*), count(DISTINCT id) FROM raw.t") == [(5000, 5000)]


def contract_run(
    s3: S3Server, bucket: str, db: Path, capsys: pytest.CaptureFixture[str], contract: str
) -> tuple[int, dict[str, Any]]:
    """Load v1.csv (id, name), then v2.csv (a new column and a changed type) with ``contract``."""
    put(s3, bucket, "v1.csv", b"id,name,score\n1,a,10\n2,b,20\n")
    put(s3, bucket, "v2.csv", b"id,name,score,extra\n3,c,30,\n4,d,40,x\n5,e,high,\n")
    code, result, _ = run(capsys, *s3_to_duckdb(s3, bucket, "v1.csv", db))
    assert code == 0, result
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3, bucket, "v2.csv", db, "--incremental-strategy", "append",
        "--schema-contract", contract))  # fmt: skip
    return code, result


def test_freeze_refuses_a_new_column_or_type_and_leaves_the_table(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "d.duckdb"
    code, result = contract_run(s3_server, bucket, db, capsys, "freeze")
    assert code == 6 and result["reason"] == "SchemaContractViolation", result["error"]
    assert "new column 'extra'" in result["error"]
    assert "column 'score' changes type bigint -> text" in result["error"]
    assert query(db, "SELECT id FROM raw.t ORDER BY id") == [(1,), (2,)]
    assert "extra" not in columns(db)
    assert query(db, "SELECT count(*) FROM raw._dlt_loads") == [(1,)]


def test_discard_value_drops_the_new_and_changed_columns(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "d.duckdb"
    code, result = contract_run(s3_server, bucket, db, capsys, "discard_value")
    assert code == 0, result
    assert "extra" not in columns(db)
    assert query(db, "SELECT id, name, score FROM raw.t ORDER BY id") == [
        (1, "a", 10), (2, "b", 20), (3, "c", None), (4, "d", None), (5, "e", None),
    ]  # fmt: skip


def test_discard_row_drops_rows_with_values_in_them(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "d.duckdb"
    code, result = contract_run(s3_server, bucket, db, capsys, "discard_row")
    assert code == 0, result
    # Every v2 row has a text score (the column's type changed): none of them fit.
    assert query(db, "SELECT id FROM raw.t ORDER BY id") == [(1,), (2,)]
    put(s3_server, bucket, "v3.csv", b"id,name,score,extra\n6,f,60,\n7,g,70,y\n")
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "v3.csv", db, "--incremental-strategy", "append",
        "--schema-contract", "discard_row"))  # fmt: skip
    assert code == 0, result
    assert query(db, "SELECT id FROM raw.t ORDER BY id") == [(1,), (2,), (6,)]
    assert "extra" not in columns(db)


def test_evolve_adds_the_column(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "d.duckdb"
    put(s3_server, bucket, "v1.csv", b"id,name\n1,a\n")
    put(s3_server, bucket, "v2.csv", b"id,name,extra\n2,b,x\n")
    for key in ("v1.csv", "v2.csv"):
        code, result, _ = run(capsys, *s3_to_duckdb(
            s3_server, bucket, key, db, "--incremental-strategy", "append"))  # fmt: skip
        assert code == 0, result
    assert query(db, "SELECT id, extra FROM raw.t ORDER BY id") == [(1, None), (2, "x")]


def test_a_bad_contract_value_is_a_usage_error(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "d.duckdb"
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "x.csv", db, "--schema-contract", "strict"))  # fmt: skip
    assert code == 2 and "--schema-contract" in result["error"] and "'strict'" in result["error"]


def test_yield_limit_loads_that_many_pages_of_page_size_rows(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "a.csv", b"id\n" + b"".join(b"%d\n" % i for i in range(1000)))
    db = tmp_path / "d.duckdb"
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "a.csv", db, "--page-size", "30", "--yield-limit", "3"))  # fmt: skip
    assert code == 0, result
    assert result["rows"] == 90 and query(db, "SELECT count(*) FROM raw.t") == [(90,)]
    code, result, _ = run(capsys, *s3_to_duckdb(
        s3_server, bucket, "a.csv", db, "--yield-limit", "0"))  # fmt: skip
    assert code == 2 and "--yield-limit must be at least 1" in result["error"]


def test_progress_json_writes_one_object_per_event_and_pipelines_dir_is_accepted(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3_server, bucket, "people.csv", PEOPLE)
    db = tmp_path / "d.duckdb"
    proc = subprocess.run(
        [KINGEST, "ingest", *s3_to_duckdb(s3_server, bucket, "people.csv", db),
         "--progress", "json", "--pipelines-dir", str(tmp_path / "pipelines")],
        env={"PATH": os.environ["PATH"], "AWS_EC2_METADATA_DISABLED": "true"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert events[-1]["status"] == "success" and events[-1]["rows"] == 2
    assert all({"time", "level", "msg", "rows", "rows_per_sec", "elapsed_sec"} <= e.keys()
               for e in events)  # fmt: skip
    assert json.loads(proc.stdout.splitlines()[-1])["status"] == "succeeded"
    assert not (tmp_path / "pipelines").exists()
    failed = subprocess.run(
        [KINGEST, "ingest", *s3_to_duckdb(s3_server, bucket, "people.csv", db),
         "--progress", "json", "--mask", "nope:hash"],
        env={"PATH": os.environ["PATH"], "AWS_EC2_METADATA_DISABLED": "true"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    end = json.loads(failed.stderr.splitlines()[0])
    assert failed.returncode == 2 and end["event"] == "end" and end["status"] == "error"
    assert end["level"] == "ERROR"


# -- DuckDB -> S3 --------------------------------------------------------------------------


def duckdb_to_s3(s3: S3Server, source: Path, bucket: str, *extra: str) -> list[str]:
    return [
        "--source-uri", f"duckdb:///{source}", "--source-table", "public.users",
        "--dest-uri", s3.uri(), "--dest-table", f"{bucket}/records", *extra,
    ]  # fmt: skip


def users_table(path: Path, extra_column: bool = False) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS public")
        extra = ", 'x' || range AS \"Nick Name\"" if extra_column else ""
        con.execute(
            "CREATE OR REPLACE TABLE public.users AS SELECT range AS id, "
            f"'user' || range || '@example.com' AS \"E-Mail\"{extra} FROM range(100)"
        )


def parquet_tables(s3: S3Server, bucket: str) -> list[Any]:
    client = s3.client()
    keys = sorted(
        o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])
        if o["Key"].startswith("records/users/") and o["Key"].endswith(".parquet")
    )  # fmt: skip
    return [pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=k)["Body"].read()))
            for k in keys]  # fmt: skip


def test_duckdb_to_s3_masks_renames_and_limits(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "records.db"
    users_table(source)
    code, result, _ = run(capsys, *duckdb_to_s3(
        s3_server, source, bucket, "--mask", "E-Mail:email", "--page-size", "10",
        "--yield-limit", "2"))  # fmt: skip
    assert code == 0, result
    (table,) = parquet_tables(s3_server, bucket)
    assert table.column_names[:2] == ["id", "e_mail"] and table.num_rows == 20
    assert table.column("e_mail").to_pylist()[:2] == ["u***0@example.com", "u***1@example.com"]


def test_duckdb_to_s3_freeze_refuses_a_new_column_and_writes_nothing(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "records.db"
    users_table(source)
    code, result, _ = run(capsys, *duckdb_to_s3(s3_server, source, bucket))
    assert code == 0, result
    before = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"])
    users_table(source, extra_column=True)
    code, result, _ = run(capsys, *duckdb_to_s3(
        s3_server, source, bucket, "--incremental-strategy", "append",
        "--schema-contract", "freeze"))  # fmt: skip
    assert code == 6 and "new column 'nick_name'" in result["error"]
    after = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert after == before
    code, result, _ = run(capsys, *duckdb_to_s3(
        s3_server, source, bucket, "--incremental-strategy", "append",
        "--schema-contract", "discard_value"))  # fmt: skip
    assert code == 0, result
    tables = parquet_tables(s3_server, bucket)
    assert len(tables) == 2 and all("nick_name" not in t.column_names for t in tables)
