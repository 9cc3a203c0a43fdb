"""The incremental cursor from the command line: a run again loads only the new rows.

Real commands against real DuckDB files and the real S3 server; the cursor's format is checked
with the real dlt 1.21 (the dlt of ingestr 0.14.155) reading what kingest stored.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from kingest.runner import dlt_files, dlt_state
from tests.platform.s3 import S3Server
from tests.platform.venvs import python_with
from tests.runner.test_to_s3_cli import keys, kill_when_delayed, kingest, make_users

DLT = "dlt==1.21.0"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """src.db: public.users, ids 0-99, ten rows per hour of `seen`."""
    make_users(tmp_path / "src.db", 100, rows_per_hour=10)
    return tmp_path


def add_rows(workdir: Path, first: int, count: int, seen: str = "2024-02-01") -> None:
    with duckdb.connect(str(workdir / "src.db")) as con:
        con.execute(
            f"INSERT INTO public.users SELECT range, 'user ' || range, TIMESTAMP '{seen}' "
            f"FROM range({first}, {first + count})"
        )


def to_duckdb(*extra: str, table: str = "raw.users") -> list[str]:
    return from_users("duckdb:///dst.db", table, *extra)


def to_s3(s3: S3Server, bucket: str, *extra: str) -> list[str]:
    return from_users(s3.uri(), f"{bucket}/records", *extra)


def from_users(dest_uri: str, dest_table: str, *extra: str) -> list[str]:
    """The flags loading src.db's public.users into ``dest_uri`` / ``dest_table``."""
    source = ["--source-uri", "duckdb:///src.db", "--source-table", "public.users"]
    return [*source, "--dest-uri", dest_uri, "--dest-table", dest_table, *extra]


def ok(workdir: Path, args: list[str]) -> dict[str, Any]:
    proc, result = kingest(workdir, *args)
    assert proc.returncode == 0, proc.stderr
    return result


def ids_in_duckdb(workdir: Path, table: str = "raw.users") -> list[int]:
    with duckdb.connect(str(workdir / "dst.db"), read_only=True) as con:
        return [row[0] for row in con.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]


def ids_in_s3(s3: S3Server, bucket: str) -> list[int]:
    ids: list[int] = []
    for key in keys(s3, bucket):
        if "/users/" in key:
            body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
            ids += pq.read_table(io.BytesIO(body)).column("id").to_pylist()
    return sorted(ids)


APPEND_ID = ("--incremental-key", "id", "--incremental-strategy", "append")


def test_duckdb_to_s3_second_run_writes_only_the_new_rows(
    s3_server: S3Server, bucket: str, source: Path
) -> None:
    first = ok(source, to_s3(s3_server, bucket, *APPEND_ID))
    add_rows(source, 100, 10)
    second = ok(source, to_s3(s3_server, bucket, *APPEND_ID))
    third = ok(source, to_s3(s3_server, bucket, *APPEND_ID))

    assert (first["rows"], second["rows"], third["rows"]) == (100, 10, 0)
    assert ids_in_s3(s3_server, bucket) == list(range(110))
    assert first["cursor"] == {
        "key": "id",
        "value": 99,
        "previous": None,
        "stored": True,
        "rows_skipped": 0,
    }
    assert (second["cursor"]["previous"], second["cursor"]["value"]) == (99, 109)
    # The row at the boundary (id 109) was loaded by the second run: skipped, not loaded again.
    assert third["cursor"]["rows_skipped"] == 1


@pytest.mark.parametrize(
    "strategy",
    [
        ("--incremental-strategy", "append"),
        ("--incremental-strategy", "none"),
        ("--incremental-strategy", "merge", "--primary-key", "id"),
        ("--incremental-strategy", "delete+insert"),
    ],
    ids=["append", "none", "merge", "delete+insert"],
)
def test_duckdb_to_duckdb_three_runs_load_each_row_once(
    source: Path, strategy: tuple[str, ...]
) -> None:
    args = to_duckdb("--incremental-key", "id", *strategy)
    ok(source, args)
    add_rows(source, 100, 10)
    ok(source, args)
    add_rows(source, 110, 5)
    last = ok(source, args)

    assert ids_in_duckdb(source) == list(range(115))
    assert last["cursor"]["value"] == 114


def test_rows_sharing_the_boundary_value_are_loaded_once(source: Path) -> None:
    args = to_duckdb("--incremental-key", "seen", *APPEND_ID[2:])
    first = ok(source, args)
    # Three more rows at the very hour the cursor stopped at, and one later.
    add_rows(source, 100, 3, seen="2024-01-01 09:00:00")
    add_rows(source, 103, 1, seen="2024-01-01 10:00:00")
    second = ok(source, args)

    assert first["cursor"]["value"] == "2024-01-01T09:00:00"
    assert second["rows"] == 4
    assert second["cursor"]["rows_skipped"] == 10
    assert ids_in_duckdb(source) == list(range(104))


def test_interval_end_backfills_a_window_and_leaves_the_cursor(source: Path) -> None:
    args = to_duckdb(*APPEND_ID)
    ok(source, args)
    backfill = ok(
        source,
        to_duckdb(*APPEND_ID, "--interval-start", "10", "--interval-end", "20", table="raw.users"),
    )
    add_rows(source, 100, 2)
    after = ok(source, args)

    assert backfill["rows"] == 11  # 10..20, both ends included (as ingestr)
    assert backfill["cursor"]["stored"] is False and backfill["cursor"]["value"] == 99
    assert after["rows"] == 2 and after["cursor"]["previous"] == 99
    assert ids_in_duckdb(source) == sorted([*range(102), *range(10, 21)])


def test_full_refresh_starts_the_cursor_afresh(source: Path) -> None:
    args = to_duckdb(*APPEND_ID)
    ok(source, args)
    with duckdb.connect(str(source / "src.db")) as con:
        con.execute("DELETE FROM public.users WHERE id >= 50")
    refreshed = ok(source, [*args, "--full-refresh"])
    add_rows(source, 50, 5)
    after = ok(source, args)

    assert refreshed["cursor"]["value"] == 49
    assert after["rows"] == 5
    assert ids_in_duckdb(source) == list(range(55))


def test_a_dropped_destination_table_loads_everything_again(source: Path) -> None:
    ok(source, to_duckdb(*APPEND_ID))
    with duckdb.connect(str(source / "dst.db")) as con:
        con.execute("DROP TABLE raw.users")
    again = ok(source, to_duckdb(*APPEND_ID))

    assert again["rows"] == 100 and again["cursor"]["previous"] is None


def test_a_failed_upload_leaves_the_cursor_where_it_was(
    s3_server: S3Server, bucket: str, source: Path
) -> None:
    ok(source, to_s3(s3_server, bucket, *APPEND_ID))
    add_rows(source, 100, 10)
    s3_server.faults.add("fail", method="PUT", path_regex=r"/records/users/", times=None)
    failed, failed_result = kingest(source, *to_s3(s3_server, bucket, *APPEND_ID))
    s3_server.faults.clear()
    retry = ok(source, to_s3(s3_server, bucket, *APPEND_ID))

    assert failed.returncode == 7, failed.stderr
    assert "cursor" not in failed_result
    assert retry["rows"] == 10 and retry["cursor"]["previous"] == 99
    assert ids_in_s3(s3_server, bucket) == list(range(110))


def test_a_failed_commit_marker_leaves_no_state_behind(
    s3_server: S3Server, bucket: str, source: Path
) -> None:
    ok(source, to_s3(s3_server, bucket, *APPEND_ID))
    states_before = [k for k in keys(s3_server, bucket) if "_dlt_pipeline_state" in k]
    add_rows(source, 100, 10)
    s3_server.faults.add("fail", method="PUT", path_regex=r"/_dlt_loads/", times=None)
    failed, _ = kingest(source, *to_s3(s3_server, bucket, *APPEND_ID))
    s3_server.faults.clear()

    assert failed.returncode == 7, failed.stderr
    assert [k for k in keys(s3_server, bucket) if "_dlt_pipeline_state" in k] == states_before
    assert ok(source, to_s3(s3_server, bucket, *APPEND_ID))["rows"] == 10


@pytest.mark.parametrize(
    "killed_at",
    [r"/records/users/", r"/records/_dlt_loads/"],
    ids=["mid-upload", "state-written-marker-not"],
)
def test_a_killed_run_leaves_the_cursor_where_it_was(
    s3_server: S3Server, bucket: str, source: Path, killed_at: str
) -> None:
    ok(source, to_s3(s3_server, bucket, *APPEND_ID))
    add_rows(source, 100, 10)
    s3_server.faults.add("delay", method="PUT", path_regex=killed_at, delay_s=8)
    kill_when_delayed(s3_server, source, to_s3(s3_server, bucket, *APPEND_ID))  # SIGKILL
    states = [k for k in keys(s3_server, bucket) if "_dlt_pipeline_state" in k]
    retry = ok(source, to_s3(s3_server, bucket, *APPEND_ID))

    # Killed before its marker, the run may have left its state object: it does not count.
    assert len(states) == (2 if "_dlt_loads" in killed_at else 1)

    assert retry["rows"] == 10 and retry["cursor"]["previous"] == 99
    assert ids_in_s3(s3_server, bucket) == list(range(110))


def test_a_failed_duckdb_load_leaves_the_cursor_where_it_was(source: Path) -> None:
    ok(source, to_duckdb(*APPEND_ID))
    add_rows(source, 100, 10)
    # A destination column the new rows cannot fill: the insert fails inside the transaction.
    with duckdb.connect(str(source / "dst.db")) as con:
        con.execute("ALTER TABLE raw.users ADD COLUMN required INTEGER DEFAULT 1 NOT NULL")
        con.execute("ALTER TABLE raw.users ALTER COLUMN required DROP DEFAULT")
    failed, _ = kingest(source, *to_duckdb(*APPEND_ID))
    with duckdb.connect(str(source / "dst.db")) as con:
        con.execute("ALTER TABLE raw.users DROP COLUMN required")
    retry = ok(source, to_duckdb(*APPEND_ID))

    assert failed.returncode == 7, failed.stderr
    assert retry["rows"] == 10 and retry["cursor"]["previous"] == 99
    assert ids_in_duckdb(source) == list(range(110))


# -- query: sources -------------------------------------------------------------------------


def test_a_query_source_follows_the_cursor_and_binds_interval_start(source: Path) -> None:
    query = (
        "query:SELECT id, upper(name) AS name, seen FROM public.users WHERE seen >= :interval_start"
    )
    args = [
        "--source-uri",
        "duckdb:///src.db",
        "--source-table",
        query,
        "--dest-uri",
        "duckdb:///dst.db",
        "--dest-table",
        "raw.from_query",
        "--incremental-key",
        "seen",
        "--incremental-strategy",
        "append",
    ]
    first = ok(source, args)
    add_rows(source, 100, 5)
    second = ok(source, args)

    assert (first["rows"], second["rows"]) == (100, 5)
    assert ids_in_duckdb(source, "raw.from_query") == list(range(105))
    with duckdb.connect(str(source / "dst.db"), read_only=True) as con:
        state = con.execute("SELECT state FROM raw._dlt_pipeline_state ORDER BY created_at DESC")
        stored = dlt_state.decompress(state.fetchone()[0])  # type: ignore[index]
    address = dlt_state.CursorAddress(dlt_files.schema_name_for("raw.from_query"), "custom", "seen")
    assert dlt_state.cursor_in(stored, address) is not None


def test_sql_limit_and_exclude_columns(source: Path) -> None:
    result = ok(
        source,
        to_duckdb(
            "--sql-limit", "7", "--sql-exclude-columns", "name", "--incremental-key", "id",
            "--incremental-strategy", "append",
        ),
    )  # fmt: skip
    with duckdb.connect(str(source / "dst.db"), read_only=True) as con:
        columns = [c[0] for c in con.execute("DESCRIBE raw.users").fetchall()]

    assert result["rows"] == 7 and result["cursor"]["value"] == 6
    assert "name" not in columns and "seen" in columns


def test_yield_limit_moves_the_cursor_only_over_the_rows_loaded(source: Path) -> None:
    limited = ok(source, to_duckdb(*APPEND_ID, "--page-size", "30", "--yield-limit", "1"))
    rest = ok(source, to_duckdb(*APPEND_ID))

    assert (limited["rows"], limited["cursor"]["value"]) == (30, 29)
    assert (rest["rows"], rest["cursor"]["previous"]) == (70, 29)
    assert ids_in_duckdb(source) == list(range(100))


def test_a_renamed_incremental_key_keeps_its_cursor(source: Path) -> None:
    """--schema-naming renames "User ID" to user_id in the destination; the cursor follows the
    source's column, as ingestr's does, and the second run loads only the new rows."""
    query = 'query:SELECT id AS "User ID", name FROM public.users'
    args = [
        "--source-uri", "duckdb:///src.db", "--source-table", query,
        "--dest-uri", "duckdb:///dst.db", "--dest-table", "raw.renamed",
        "--incremental-key", "User ID", "--incremental-strategy", "delete+insert",
    ]  # fmt: skip
    first = ok(source, args)
    add_rows(source, 100, 3)
    second = ok(source, args)

    with duckdb.connect(str(source / "dst.db"), read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT user_id FROM raw.renamed ORDER BY 1").fetchall()]
    assert (first["cursor"]["key"], first["cursor"]["value"]) == ("User ID", 99)
    # delete+insert reads the boundary row (99) again and replaces it: 3 new rows + 1.
    assert second["rows"] == 4
    assert ids == list(range(103))


def test_excluding_the_incremental_key_is_refused(source: Path) -> None:
    proc, result = kingest(source, *to_duckdb(*APPEND_ID, "--sql-exclude-columns", "seen,id"))

    assert proc.returncode == 2
    assert "--incremental-key" in result["error"]
    assert not (source / "dst.db").exists()


# -- scd2 -------------------------------------------------------------------------------------

SCD2 = ("--incremental-strategy", "scd2", "--primary-key", "id")


def versions(workdir: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(workdir / "dst.db"), read_only=True) as con:
        return con.execute(
            "SELECT id, name, _dlt_valid_from, _dlt_valid_to FROM raw.users "
            "WHERE id IN (1, 2, 3) ORDER BY id, _dlt_valid_from"
        ).fetchall()


def test_scd2_keeps_the_old_version_of_a_changed_row_closed(source: Path) -> None:
    ok(source, to_duckdb(*SCD2))
    with duckdb.connect(str(source / "src.db")) as con:
        con.execute("UPDATE public.users SET name = 'renamed' WHERE id = 1")
        con.execute("DELETE FROM public.users WHERE id = 2")
    ok(source, to_duckdb(*SCD2))
    ok(source, to_duckdb(*SCD2))  # nothing changed: no new versions

    (one_old, one_new, two, three) = versions(source)
    assert one_old[1] == "user 1" and one_old[3] == one_new[2]  # closed when the new one began
    assert one_new[1] == "renamed" and one_new[3] is None
    assert two[3] is not None  # gone from the full snapshot: closed
    assert three[3] is None and three[2] == one_old[2]
    with duckdb.connect(str(source / "dst.db"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.users").fetchone() == (101,)


def test_scd2_with_an_incremental_key_keeps_absent_keys_current(source: Path) -> None:
    args = to_duckdb(*SCD2, "--incremental-key", "seen")
    ok(source, args)
    with duckdb.connect(str(source / "src.db")) as con:
        con.execute("UPDATE public.users SET name = 'renamed', seen = '2024-03-01' WHERE id = 1")
    second = ok(source, args)

    assert second["rows"] == 1
    (one_old, one_new, two, three) = versions(source)
    assert one_old[3] is not None and one_new[1] == "renamed"
    assert two[3] is None and three[3] is None


def test_scd2_needs_a_primary_key_and_a_database(
    s3_server: S3Server, bucket: str, source: Path
) -> None:
    no_key, result = kingest(source, *to_duckdb("--incremental-strategy", "scd2"))
    to_files, files_result = kingest(source, *to_s3(s3_server, bucket, *SCD2))

    assert no_key.returncode == 2 and "--primary-key" in result["error"]
    assert to_files.returncode == 2 and "scd2" in files_result["error"]


# -- the format, read by dlt itself ---------------------------------------------------------


def with_dlt(code: str, *args: Path) -> str:
    """Run ``code`` with the real dlt (and ``args``); its stdout."""
    done = subprocess.run(
        [str(python_with(DLT)), "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "RUNTIME__DLTHUB_TELEMETRY": "false"},
        cwd="/",  # not the repository, whose operator/ would shadow the stdlib module
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_dlt_reads_the_cursor_kingest_stored(
    s3_server: S3Server, bucket: str, source: Path, tmp_path: Path
) -> None:
    ok(source, to_s3(s3_server, bucket, "--incremental-key", "seen", *APPEND_ID[2:]))
    state_key = next(k for k in keys(s3_server, bucket) if "_dlt_pipeline_state" in k)
    body = s3_server.client().get_object(Bucket=bucket, Key=state_key)["Body"].read()
    (tmp_path / "state.json").write_bytes(body)
    with duckdb.connect(str(source / "src.db"), read_only=True) as con:
        boundary = con.sql(
            "SELECT id, name, seen FROM public.users WHERE seen = '2024-01-01 09:00:00'"
        ).to_arrow_table()
    (tmp_path / "rows.json").write_text(json.dumps(boundary.to_pylist(), default=str))
    check = (
        "import json, sys, datetime\n"
        "from dlt.common.versioned_state import decompress_state\n"
        "from dlt.common.utils import digest128\n"
        "from dlt.common.json import json as djson\n"
        "doc = json.load(open(sys.argv[1]))\n"
        "state = decompress_state(doc['state'])\n"
        "source = state['sources'][state['default_schema_name']]\n"
        "cursor = source['resources']['users']['incremental']['seen']\n"
        "rows = json.load(open(sys.argv[2]))\n"
        "for r in rows: r['seen'] = datetime.datetime.fromisoformat(r['seen'])\n"
        "hashes = sorted(digest128(djson.dumps(r, sort_keys=True)) for r in rows)\n"
        "print(json.dumps({'last': repr(cursor['last_value']),\n"
        "    'ours': sorted(cursor['unique_hashes']), 'dlts': hashes}))\n"
    )
    seen = json.loads(with_dlt(check, tmp_path / "state.json", tmp_path / "rows.json"))

    assert "2024, 1, 1, 9, 0" in seen["last"]  # a datetime again, not a string
    assert seen["ours"] == seen["dlts"] and len(seen["ours"]) == 10


def test_kingest_resumes_from_a_cursor_dlt_wrote(source: Path) -> None:
    """A state written with dlt's own encoder (its typed JSON, zlib, base64) is read."""
    make = (
        "import datetime, json\n"
        "from dlt.common.versioned_state import compress_state, generate_state_version_hash\n"
        "from dlt.common.utils import digest128\n"
        "from dlt.common.json import json as djson\n"
        f"name = {dlt_files.pipeline_name_for('raw.users')!r}\n"
        f"schema = {dlt_files.schema_name_for('raw.users')!r}\n"
        "row = {'id': 49, 'name': 'user 49', 'seen': datetime.datetime(2024, 1, 1, 4)}\n"
        "cursor = {'initial_value': None, 'last_value': 49,\n"
        "          'unique_hashes': [digest128(djson.dumps(row, sort_keys=True))]}\n"
        "state = {'_state_version': 1, '_state_engine_version': 4, 'pipeline_name': name,\n"
        "    'sources': {schema: {'resources': {'users': {'incremental': {'id': cursor}}}}}}\n"
        "state['_version_hash'] = generate_state_version_hash(state)\n"
        "print(json.dumps({'state': compress_state(state), 'hash': state['_version_hash']}))\n"
    )
    written = json.loads(with_dlt(make))
    # The first 50 rows were loaded by "dlt"; its state row and load marker say so.
    with duckdb.connect(str(source / "src.db")) as con:
        con.execute("DELETE FROM public.users WHERE id >= 50")
    ok(source, to_duckdb("--incremental-strategy", "append"))
    with duckdb.connect(str(source / "dst.db")) as con:
        load_id = con.execute("SELECT load_id FROM raw._dlt_loads").fetchone()[0]  # type: ignore[index]
        con.execute(
            "INSERT INTO raw._dlt_pipeline_state VALUES (1, 4, ?, ?, now() + INTERVAL 1 SECOND, "
            "?, ?, 'x')",
            [dlt_files.pipeline_name_for("raw.users"), written["state"], written["hash"], load_id],
        )
        con.execute("DELETE FROM raw._dlt_pipeline_state WHERE _dlt_id <> 'x'")
    add_rows(source, 50, 60)
    resumed = ok(source, to_duckdb(*APPEND_ID))

    assert resumed["cursor"]["previous"] == 49
    assert resumed["rows"] == 60 and resumed["cursor"]["rows_skipped"] == 1
    assert ids_in_duckdb(source) == list(range(110))


# -- with ingestr 0.14.155 itself --------------------------------------------------------------

INGESTR = "ingestr==0.14.155"
CREATE_USERS = (
    "CREATE SCHEMA public; CREATE TABLE public.users AS SELECT range AS id, 'user ' || range "
    "AS name, TIMESTAMP '2024-01-01' + INTERVAL (range // 10) HOUR AS seen FROM range(100)"
)
# Three rows at the boundary hour (09:00) the first run stops at, seven later.
ADD_USERS = (
    "INSERT INTO public.users SELECT range, 'user ' || range, TIMESTAMP '2024-01-01 09:00' "
    "FROM range(100, 103); INSERT INTO public.users SELECT range, 'user ' || range, "
    "TIMESTAMP '2024-01-02' FROM range(103, 110)"
)


def with_ingestr(workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """Run ingestr 0.14.155's `ingestr ARGS` in ``workdir`` (the command must succeed)."""
    python = python_with(INGESTR)
    done = subprocess.run(
        [str(python.parent / "ingestr"), *args],
        cwd=workdir,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(workdir),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "INGESTR_DISABLE_TELEMETRY": "true",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def with_ingestrs_duckdb(workdir: Path, sql: str) -> None:
    """Run ``sql`` on src.db with ingestr's DuckDB: kingest's newer one writes a file format
    the older cannot open, while the newer reads the older's."""
    code = f"import duckdb; duckdb.connect('src.db').execute({sql!r})"
    subprocess.run([str(python_with(INGESTR)), "-c", code], cwd=workdir, check=True)


def test_kingest_continues_a_cursor_ingestr_stored_in_duckdb(tmp_path: Path) -> None:
    with_ingestrs_duckdb(tmp_path, CREATE_USERS)
    args = to_duckdb("--incremental-key", "seen", "--incremental-strategy", "append")
    with_ingestr(tmp_path, "ingest", *args, "--yes")
    with_ingestrs_duckdb(tmp_path, ADD_USERS)
    resumed = ok(tmp_path, args)

    assert resumed["cursor"]["previous"] == "2024-01-01T09:00:00"
    assert resumed["rows"] == 10 and resumed["cursor"]["rows_skipped"] == 10
    assert ids_in_duckdb(tmp_path) == list(range(110))


def test_ingestr_continues_a_cursor_kingest_stored_in_s3(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    with_ingestrs_duckdb(tmp_path, CREATE_USERS)
    args = to_s3(s3_server, bucket, "--incremental-key", "seen", *APPEND_ID[2:])
    ok(tmp_path, args)
    # ingestr 0.14.155 keeps a `bucket/records` dataset's _dlt_* objects at the bucket root (and
    # its rows in records/<load_id>.<file_id>.parquet), where kingest follows the seed page's
    # records/_dlt_*: its bookkeeping is copied to where ingestr looks.
    client = s3_server.client()
    for key in keys(s3_server, bucket):
        if key.startswith(("records/_dlt_", "records/init")):
            source = {"Bucket": bucket, "Key": key}
            client.copy_object(Bucket=bucket, Key=key.removeprefix("records/"), CopySource=source)
    with_ingestrs_duckdb(tmp_path, ADD_USERS)
    with_ingestr(tmp_path, "ingest", *args, "--yes", env=s3_server.env())

    written = [k for k in keys(s3_server, bucket) if k.endswith(".parquet") and "/users/" not in k]
    body = client.get_object(Bucket=bucket, Key=written[0])["Body"].read()
    assert len(written) == 1
    assert sorted(pq.read_table(io.BytesIO(body)).column("id").to_pylist()) == list(range(100, 110))
