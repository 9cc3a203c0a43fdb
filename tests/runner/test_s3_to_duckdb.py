"""`kingest ingest` from the platform's S3 server into real DuckDB files."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kingest.runner.cli import ingest
from tests.platform.s3 import S3Server

KINGEST = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kingest")


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    """Run `kingest ingest` in-process; returns exit code, result JSON and stderr."""
    code = ingest(list(argv), environ=env or {})
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), out + err


def load(s3: S3Server, bucket: str, db: Path, table: str, *extra: str) -> list[str]:
    return [
        "--source-uri", s3.uri(), "--source-table", f"{bucket}/{table}",
        "--dest-uri", f"duckdb:///{db}", "--dest-table", "raw.t", *extra,
    ]  # fmt: skip


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def put(s3: S3Server, bucket: str, key: str, body: bytes) -> None:
    s3.client().put_object(Bucket=bucket, Key=key, Body=body)


def csv_rows(n: int, start: int = 0) -> bytes:
    return ("id,name\n" + "".join(f"{i},n{i}\n" for i in range(start, start + n))).encode()


def test_the_seed_example_loads_a_csv_into_schema_and_table(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "students/students_details.csv",
        b'id,name,score,born,seen\n1,"Ann, ""A""\nB",1.5,2001-01-02,2024-01-01T10:00:00Z\n'
        b"2,Bob,,2002-03-04,\n")  # fmt: skip
    db = tmp_path / "s3_data.duckdb"
    code, result, _ = run(
        capsys, "--source-uri", s3_server.uri(), "--source-table",
        f"{bucket}/students/students_details.csv", "--dest-uri", f"duckdb:///{db}",
        "--dest-table", "processed_students.student_details",
    )  # fmt: skip
    assert code == 0, result
    assert result["rows"] == 2 and result["files"] == 1 and result["status"] == "succeeded"
    rows = query(db, "SELECT id, name, score, born FROM processed_students.student_details")
    assert rows[0][:3] == (1, 'Ann, "A"\nB', 1.5) and rows[1][2] is None
    types = dict(query(db, "SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_name = 'student_details'"))  # fmt: skip
    assert types == {
        "id": "BIGINT", "name": "VARCHAR", "score": "DOUBLE", "born": "DATE",
        "seen": "TIMESTAMP WITH TIME ZONE", "_dlt_load_id": "VARCHAR", "_dlt_id": "VARCHAR",
    }  # fmt: skip
    loads = query(db, "SELECT load_id, status FROM processed_students._dlt_loads")
    assert loads == [(result["load_id"], 0)]
    assert float(result["load_id"]) > 1.7e9
    assert query(db, "SELECT DISTINCT _dlt_load_id FROM processed_students.student_details") == [
        (result["load_id"],)
    ]
    assert query(db, "SELECT count(*) FROM processed_students._dlt_version")[0][0] == 1
    assert query(db, "SELECT count(*) FROM processed_students._dlt_pipeline_state")[0][0] == 1


LAYOUT = {  # key -> rows; each count a distinct power of two shows which files were picked
    "root.csv": 1,
    "a/x.csv": 2,
    "a/y.csv": 4,
    "a/b/z.csv": 8,
    "a/b/c/deep.csv": 16,
    "other/x.csv": 32,
    "a/notes.txt.csv.bak": 64,
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("**/*.csv", 1 + 2 + 4 + 8 + 16 + 32),
        ("*.csv", 1),
        ("a/**/*.csv", 2 + 4 + 8 + 16),
        ("a/*.csv", 2 + 4),
        ("a/?.csv", 2 + 4),
        ("a/[x].csv", 2),
        ("a/[!x].csv", 4),
        ("a/b/z.csv", 8),
        ("**/deep.csv", 16),
        ("a/**", 2 + 4 + 8 + 16 + 64),
    ],
)
def test_glob_patterns_pick_exactly_the_matching_objects(
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pattern: str,
    expected: int,
) -> None:
    for key, count in LAYOUT.items():
        put(s3_server, bucket, key, csv_rows(count))
    extra = ("--source-table", f"{bucket}/{pattern}#csv") if pattern == "a/**" else ()
    code, result, out = run(
        capsys, *load(s3_server, bucket, tmp_path / "g.duckdb", pattern), *extra
    )
    assert code == 0, out
    assert result["rows"] == expected


def test_legacy_bucket_names_with_underscores_are_accepted() -> None:
    from kingest.runner.glob import ObjectGlob

    glob = ObjectGlob.parse("my_bucket/students/**/*.csv")
    assert (glob.bucket, glob.prefix) == ("my_bucket", "students/")


def _formats() -> dict[str, bytes]:
    table = pa.table({"id": [1, 2, None], "name": ["a", "b,c", "d"], "day": ["2024-01-01"] * 3})
    sink = io.BytesIO()
    pq.write_table(table.set_column(2, "day", pa.array([None] * 3, pa.date32())), sink)
    jsonl = b'{"id": 1, "name": "a"}\n\n{"id": 2, "name": "b,c"}\n{"id": null, "name": "d"}\n'
    csv = b'id,name\n1,a\n2,"b,c"\n,d\n'
    return {"csv": csv, "jsonl": jsonl, "ndjson": jsonl, "parquet": sink.getvalue()}


@pytest.mark.parametrize("compression", ["", ".gz", ".zst"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "ndjson", "parquet"])
def test_each_format_and_compression_loads_the_same_rows_and_types(
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
    compression: str,
) -> None:
    body = _formats()[fmt]
    if compression == ".gz":
        body = gzip.compress(body)
    elif compression == ".zst":
        # pa.compress emits a standard zstd frame, as the zstd tool writes it.
        body = pa.compress(body, codec="zstd", asbytes=True)
    put(s3_server, bucket, f"d/file.{fmt}{compression}", body)
    db = tmp_path / "f.duckdb"
    code, _, out = run(capsys, *load(s3_server, bucket, db, f"d/*.{fmt}{compression}"))
    assert code == 0, out
    assert query(db, "SELECT id, name FROM raw.t ORDER BY name") == [
        (1, "a"),
        (2, "b,c"),
        (None, "d"),
    ]
    assert query(db, "SELECT data_type FROM information_schema.columns WHERE column_name='id'") == [
        ("BIGINT",)
    ]


def test_what_the_schema_pass_reads_is_not_fetched_again(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    medium = csv_rows(40_000, start=1_000)  # over 256 KiB, within the schema's first block
    large = csv_rows(300_000, start=1_000_000)  # beyond the first block (4 MiB)
    assert 256 * 1024 < len(medium) < 4 * 1024 * 1024 < len(large) < 8 * 1024 * 1024
    parquet = io.BytesIO()
    pq.write_table(pa.table({"id": pa.array(range(150, 200), pa.int64())}), parquet)
    objects = {
        "small.csv": csv_rows(100),
        "small.jsonl.gz": gzip.compress(b"".join(b'{"id": %d}\n' % i for i in range(100, 150))),
        "medium.csv": medium,
        "large.csv": large,
        "rows.parquet": parquet.getvalue(),
    }
    for key, body in objects.items():
        put(s3_server, bucket, f"d/{key}", body)
        # A rule per object that changes nothing, only counts its GETs.
        pattern = rf"/{bucket}/d/{key.replace('.', '[.]')}($|\?)"
        s3_server.faults.add("delay", method="GET", path_regex=pattern, delay_s=0, times=None)
    db = tmp_path / "small.duckdb"
    code, result, out = run(capsys, *load(s3_server, bucket, db, "d/*.csv"))
    assert code == 0, out
    for more in ("d/*.jsonl.gz", "d/*.parquet"):
        code, _, out = run(
            capsys, *load(s3_server, bucket, db, more), "--incremental-strategy", "append"
        )
        assert code == 0, out
    assert result["rows"] == 340_100
    assert query(db, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM raw.t") == [
        (340_200, 340_200, 0, 1_299_999)
    ]
    gets = dict(zip(objects, (rule["hits"] for rule in s3_server.faults.rules()), strict=True))
    # Text files the schema's first block holds, whole and once; a larger one's first block,
    # then all of it; a Parquet file's footer once, then its row groups.
    assert gets["small.csv"] == gets["small.jsonl.gz"] == gets["medium.csv"] == 1
    assert gets["large.csv"] >= 2
    assert gets["rows.parquet"] == 2


def test_format_hints_read_files_without_the_right_extension_and_encoding(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "feed.dat", "id,city\n1,Köln\n".encode("latin-1"))
    db = tmp_path / "h.duckdb"
    code, _, out = run(capsys, *load(s3_server, bucket, db, "feed.dat#csv#encoding=latin-1"))
    assert code == 0, out
    assert query(db, "SELECT city FROM raw.t") == [("Köln",)]


def test_headless_csv_gets_generated_names_or_those_of_columns(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "h.csv", b"1,a\n2,b\n")
    db = tmp_path / "hl.duckdb"
    assert run(capsys, *load(s3_server, bucket, db, "h.csv#csv_headless"))[0] == 0
    assert query(db, "SELECT unknown_col_0, unknown_col_1 FROM raw.t") == [(1, "a"), (2, "b")]
    code, _, out = run(
        capsys, *load(s3_server, bucket, db, "h.csv#csv_headless"), "--columns", "id:text,name:text"
    )
    assert code == 0, out
    assert query(db, "SELECT id, name FROM raw.t") == [("1", "a"), ("2", "b")]


def test_schemas_unify_across_files(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "u/1.csv", b"id,v\n1,1\n")
    put(s3_server, bucket, "u/2.csv", b"id,v,extra\n2,2.5,x\n")
    put(s3_server, bucket, "u/3.csv", b"id,v\n3,\n")
    db = tmp_path / "u.duckdb"
    code, _, out = run(capsys, *load(s3_server, bucket, db, "u/*.csv"))
    assert code == 0, out
    assert query(db, "SELECT id, v, extra FROM raw.t ORDER BY id") == [
        (1, 1.0, None), (2, 2.5, "x"), (3, None, None),
    ]  # fmt: skip
    types = query(db, "SELECT data_type FROM information_schema.columns WHERE table_name='t'")
    assert [t[0] for t in types][:3] == ["BIGINT", "DOUBLE", "VARCHAR"]


def test_nested_json_lands_as_struct_and_list(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "n.jsonl", b'{"id": 1, "o": {"a": 1}, "l": [1, 2], "d": "2024-05-01"}\n')
    db = tmp_path / "n.duckdb"
    assert run(capsys, *load(s3_server, bucket, db, "n.jsonl"))[0] == 0
    assert query(db, "SELECT o.a, l[2], d FROM raw.t")[0][:2] == (1, 2)
    assert query(db, "SELECT typeof(d) FROM raw.t") == [("DATE",)]


def test_hive_partitions_and_source_file_path_become_columns_on_request(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "p/dt=2026-11-25/country=DE/f.csv", b"id\n1\n")
    put(s3_server, bucket, "p/dt=2026-11-26/country=FR/f.csv", b"id\n2\n")
    db = tmp_path / "p.duckdb"
    argv = load(s3_server, bucket, db, "p/**/*.csv")
    argv[1] = s3_server.uri(hive_partitioning="true", include_file_path="true")
    code, _, out = run(capsys, *argv)
    assert code == 0, out
    rows = query(db, "SELECT id, dt, country, _ingestr_source_file_path FROM raw.t ORDER BY id")
    assert rows[0][1].isoformat() == "2026-11-25" and rows[0][2] == "DE"
    assert rows[1][3] == f"s3://{bucket}/p/dt=2026-11-26/country=FR/f.csv"


@pytest.mark.parametrize(
    ("strategy", "extra", "expected"),
    [
        ("replace", [], [(1, "b"), (2, "c")]),
        ("append", [], [(1, "a"), (1, "b"), (2, "b"), (2, "c")]),
        ("merge", ["--primary-key", "id"], [(1, "b"), (2, "c")]),
        ("delete+insert", ["--incremental-key", "id"], [(1, "b"), (2, "c")]),
    ],
)
def test_strategies_combine_a_second_load_with_the_first(
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    strategy: str,
    extra: list[str],
    expected: list[tuple[int, str]],
) -> None:
    db = tmp_path / "s.duckdb"
    put(s3_server, bucket, "s.csv", b"id,v\n1,a\n2,b\n")
    assert run(capsys, *load(s3_server, bucket, db, "s.csv"))[0] == 0
    put(s3_server, bucket, "s.csv", b"id,v\n1,b\n2,c\n")
    argv = [*load(s3_server, bucket, db, "s.csv"), "--incremental-strategy", strategy, *extra]
    code, _, out = run(capsys, *argv)
    assert code == 0, out
    assert query(db, "SELECT id, v FROM raw.t ORDER BY id, v") == expected
    assert query(db, "SELECT count(*) FROM raw._dlt_loads")[0][0] == 2


def test_merge_keeps_one_row_per_primary_key_and_updates_existing_rows(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "m.duckdb"
    put(s3_server, bucket, "m.csv", b"id,v\n1,a\n2,b\n")
    run(capsys, *load(s3_server, bucket, db, "m.csv"))
    put(s3_server, bucket, "m.csv", b"id,v\n2,x\n2,y\n3,z\n")
    argv = [*load(s3_server, bucket, db, "m.csv"), "--incremental-strategy", "merge"]
    assert run(capsys, *argv, "--primary-key", "id")[0] == 0
    assert query(db, "SELECT id, v FROM raw.t ORDER BY id") == [(1, "a"), (2, "y"), (3, "z")]


def test_environment_variables_set_flags_and_secret_parameters(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "e.csv", csv_rows(3))
    db = tmp_path / "e.duckdb"
    env = {
        "SOURCE_URI": f"s3://?endpoint_url={s3_server.endpoint_url}",
        "KINGEST_SOURCE_ACCESS_KEY_ID": s3_server.access_key_id,
        "KINGEST_SOURCE_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "INGESTR_SOURCE_TABLE": f"{bucket}/e.csv",
        "DESTINATION_URI": f"duckdb:///{db}",
        "DESTINATION_TABLE": "env.t",
    }
    code, result, out = run(capsys, env=env)
    assert code == 0, out
    assert result["rows"] == 3 and query(db, "SELECT count(*) FROM env.t") == [(3,)]


def test_a_parameter_both_in_the_uri_and_the_environment_is_a_usage_error(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"KINGEST_SOURCE_SECRET_ACCESS_KEY": "other-secret-value"}
    code, result, out = run(
        capsys, *load(s3_server, bucket, tmp_path / "x.duckdb", "e.csv"), env=env
    )
    assert code == 2 and result["reason"] == "UsageError"
    assert "secret_access_key" in result["error"] and "KINGEST_SOURCE_SECRET_ACCESS_KEY" in out
    assert "other-secret-value" not in out and s3_server.secret_access_key not in out


def _kingest(
    argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KINGEST_"))}
    return subprocess.run(
        [KINGEST, "ingest", *argv], capture_output=True, text=True, env={**full_env, **(env or {})},
        timeout=120,
    )  # fmt: skip


def test_errors_have_distinct_exit_codes_and_never_print_secrets(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    db = tmp_path / "err.duckdb"
    put(s3_server, bucket, "data/ok.csv", csv_rows(2))
    secret = s3_server.secret_access_key
    cases = {
        2: [*load(s3_server, bucket, db, "data/ok.csv"), "--source-uri", s3_server.uri(regoin="x")],
        3: load(s3_server, bucket, db, "data/*.parquet"),
        4: ["--source-uri", s3_server.uri(), "--source-table", "no-such-bucket-x/a.csv",
            "--dest-uri", f"duckdb:///{db}", "--dest-table", "raw.t"],
    }  # fmt: skip
    for expected, argv in cases.items():
        done = _kingest(argv)
        assert done.returncode == expected, done.stderr
        assert "Traceback" not in done.stderr
        assert secret not in done.stdout + done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["status"] == "failed" and result["error"]
    assert "regoin" in json.loads(_kingest(cases[2]).stdout.splitlines()[-1])["error"]
    assert "data/" in json.loads(_kingest(cases[3]).stdout.splitlines()[-1])["error"]
    assert not db.exists()


def test_missing_credentials_are_access_denied_exit_5(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    # No keys in the URI and none in the environment: the default chain finds nothing.
    # (Instance metadata is disabled: the test must not reach for a non-loopback address.)
    argv = load(s3_server, bucket, tmp_path / "d.duckdb", "*.csv")
    argv[1] = f"s3://?endpoint_url={s3_server.endpoint_url}"
    done = _kingest(argv, env={"AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path)})
    assert done.returncode == 5, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["reason"] == "AccessDenied"


def test_a_data_error_names_file_and_column_and_leaves_the_database_unchanged(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "de.duckdb"
    put(s3_server, bucket, "v/1.csv", csv_rows(3))
    assert run(capsys, *load(s3_server, bucket, db, "v/*.csv"))[0] == 0
    before = query(db, "SELECT * FROM raw.t ORDER BY id"), query(db, "SELECT * FROM raw._dlt_loads")
    put(s3_server, bucket, "v/2.csv", b"id,name\n7,x\nseven,y\n")
    argv = [*load(s3_server, bucket, db, "v/*.csv"), "--columns", "id:bigint"]
    code, result, _ = run(capsys, *argv, "--incremental-strategy", "append")
    assert (code, result["reason"]) == (6, "DataError")
    assert f"s3://{bucket}/v/2.csv" in result["error"] and "'id'" in result["error"]
    assert "seven" in result["error"]
    after = query(db, "SELECT * FROM raw.t ORDER BY id"), query(db, "SELECT * FROM raw._dlt_loads")
    assert after == before


def test_a_destination_error_exits_7_and_leaves_the_table(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "dest.duckdb"
    put(s3_server, bucket, "a.csv", b"id\n1\n")
    assert run(capsys, *load(s3_server, bucket, db, "a.csv"))[0] == 0
    put(s3_server, bucket, "a.csv", b"id\nnot-a-number\n")
    code, result, _ = run(
        capsys, *load(s3_server, bucket, db, "a.csv"), "--incremental-strategy", "append"
    )
    assert (code, result["reason"]) == (7, "DestinationError")
    assert query(db, "SELECT id FROM raw.t") == [(1,)]


def test_several_formats_in_one_glob_are_an_error_naming_them(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "m/a.csv", b"id\n1\n")
    put(s3_server, bucket, "m/b.jsonl", b'{"id": 1}\n')
    code, result, _ = run(capsys, *load(s3_server, bucket, tmp_path / "x.duckdb", "m/*"))
    assert code == 2 and "csv" in result["error"] and "jsonl" in result["error"]


def test_the_result_file_holds_the_json_result(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(s3_server, bucket, "r.csv", csv_rows(5))
    result_file = tmp_path / "termination-log"
    code, result, _ = run(
        capsys, *load(s3_server, bucket, tmp_path / "r.duckdb", "r.csv"),
        env={"KINGEST_RESULT_FILE": str(result_file)},
    )  # fmt: skip
    assert code == 0
    written = json.loads(result_file.read_text())
    assert written == result and written["rows"] == 5 and written["destination_table"] == "raw.t"
    assert len(result_file.read_bytes()) <= 4096


def test_a_403_from_the_store_is_access_denied_exit_5(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3_server.faults.add("fail", method="GET", path_regex=rf"/{bucket}\?", status=403, times=None)
    code, result, out = run(capsys, *load(s3_server, bucket, tmp_path / "d.duckdb", "*.csv"))
    assert (code, result["reason"]) == (5, "AccessDenied")
    assert bucket in result["error"] and s3_server.secret_access_key not in out
    assert not (tmp_path / "d.duckdb").exists()
