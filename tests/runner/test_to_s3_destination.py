"""DuckDB tables into the platform's real S3 server: object tree, formats, strategies, failures."""

from __future__ import annotations

import base64
import io
import json
import re
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest

from kingest.runner.duckdb_source import DuckDBSource, DuckDBTable
from kingest.runner.errors import KingestError
from kingest.runner.s3_destination import S3Destination, S3LoadResult, S3WriteOptions
from kingest.runner.uri import S3Uri
from tests.platform.s3 import S3Server

LOAD_ID = r"\d{10}\.\d+"
FILE_ID = r"[0-9a-f]{10}"
HASH = r"[0-9a-f]{64}"
# The schema: the pipeline's hash as dlt normalises it (a leading digit: "_", then shortened).
SCHEMA = r"(?:[0-9a-f]{64}|_[0-9a-f]{28}[0-9a-z]{6}[0-9a-f]{29})"


def make_db(path: Path, sql: str) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute(sql)
    return path


@pytest.fixture
def records_db(tmp_path: Path) -> Path:
    """The seed's records.db: table public.users, 2,500 rows."""
    return make_db(
        tmp_path / "records.db",
        "CREATE SCHEMA public; CREATE TABLE public.users AS "
        "SELECT range AS id, 'user ' || range AS name, range % 7 = 0 AS vip, "
        "TIMESTAMP '2024-01-01' + INTERVAL (range) MINUTE AS created_at FROM range(2500)",
    )


def settings(s3: S3Server, **extra: Any) -> S3Uri:
    return S3Uri(
        access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
        endpoint_url=s3.endpoint_url,
        **extra,
    )


def load(
    db: Path,
    s3_settings: S3Uri,
    dest_table: str,
    source_table: str = "public.users",
    table_name: str = "users",
    **options: Any,
) -> S3LoadResult:
    destination = S3Destination(s3_settings, dest_table, S3WriteOptions(**options))
    with DuckDBSource(db, DuckDBTable.parse(source_table), batch_rows=1000).open() as stream:
        return destination.write(stream.reader, table_name)


def keys(s3: S3Server, bucket: str) -> list[str]:
    response = s3.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in response.get("Contents", []))


def body(s3: S3Server, bucket: str, key: str) -> bytes:
    return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def read_parquet(s3: S3Server, bucket: str, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(body(s3, bucket, key)))


def table_keys(s3: S3Server, bucket: str) -> list[str]:
    return [k for k in keys(s3, bucket) if "/_dlt_" not in k and not k.endswith("/init")]


def test_default_layout_writes_the_seed_tree(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    result = load(records_db, settings(s3_server), f"{bucket}/records")

    tree = keys(s3_server, bucket)
    lid = re.escape(result.load_id)
    patterns = [
        rf"records/_dlt_loads/{SCHEMA}__{lid}\.jsonl",
        rf"records/_dlt_pipeline_state/{HASH}__{lid}__{HASH}\.jsonl",
        rf"records/_dlt_version/{SCHEMA}__{lid}__{HASH}\.jsonl",
        r"records/init",
        rf"records/users/{lid}\.{FILE_ID}\.parquet",
    ]
    assert re.fullmatch(LOAD_ID, result.load_id)
    assert len(tree) == len(patterns)
    for key, pattern in zip(tree, patterns, strict=True):
        assert re.fullmatch(pattern, key), (key, pattern)
    assert result.files == [tree[-1]]
    assert result.rows == 2500

    data = read_parquet(s3_server, bucket, tree[-1])
    with duckdb.connect(str(records_db), read_only=True) as con:
        expected = con.sql("SELECT * FROM public.users").to_arrow_table()
    assert data.schema == expected.schema
    assert data.equals(expected)


def test_table_name_ext_layout_writes_one_file_named_after_the_table(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    load(records_db, settings(s3_server, layout="{table_name}.{ext}"), f"{bucket}/records")

    assert table_keys(s3_server, bucket) == ["records/users.parquet"]
    assert read_parquet(s3_server, bucket, "records/users.parquet").num_rows == 2500


def test_layout_without_file_id_is_never_split(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    # A 1-byte file limit would split after every batch if the layout allowed it.
    load(
        records_db,
        settings(s3_server, layout="{table_name}.{ext}"),
        f"{bucket}/records",
        file_max_bytes=1,
    )

    assert table_keys(s3_server, bucket) == ["records/users.parquet"]
    assert read_parquet(s3_server, bucket, "records/users.parquet").num_rows == 2500


def test_loader_file_size_splits_into_files_with_their_own_file_id(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    result = load(records_db, settings(s3_server), f"{bucket}/records", file_max_rows=1000)

    files = table_keys(s3_server, bucket)
    assert sorted(result.files) == files
    assert len(files) == 3
    assert len({f.split(".")[-2] for f in files}) == 3
    counts = sorted(read_parquet(s3_server, bucket, f).num_rows for f in files)
    assert counts == [500, 1000, 1000]


def test_loader_file_size_with_a_layout_without_file_id_is_a_usage_error(
    s3_server: S3Server, bucket: str
) -> None:
    with pytest.raises(KingestError, match=r"has no \{file_id\}") as err:
        S3Destination(
            settings(s3_server, layout="{table_name}.{ext}"),
            f"{bucket}/records",
            S3WriteOptions(file_max_rows=10),
        )
    assert err.value.reason == "UsageError"


def test_parquet_row_groups_are_sized_for_readers(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    db = make_db(tmp_path / "big.db", "CREATE TABLE t AS SELECT range AS id FROM range(300000)")
    result = load(db, settings(s3_server), f"{bucket}/ds", source_table="t", table_name="t")

    meta = pq.ParquetFile(io.BytesIO(body(s3_server, bucket, result.files[0]))).metadata
    assert meta.num_rows == 300000
    # Batches of 1,000 rows from the source are gathered into row groups of 122,880.
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [
        122880,
        122880,
        54240,
    ]


def test_csv_format(s3_server: S3Server, bucket: str, records_db: Path) -> None:
    result = load(records_db, settings(s3_server), f"{bucket}/records", file_format="csv")

    (key,) = table_keys(s3_server, bucket)
    assert re.fullmatch(rf"records/users/{re.escape(result.load_id)}\.{FILE_ID}\.csv", key)
    data = pa_csv.read_csv(io.BytesIO(body(s3_server, bucket, key)))
    assert data.num_rows == 2500
    assert data.column_names == ["id", "name", "vip", "created_at"]
    assert data.column("name")[3].as_py() == "user 3"


def test_jsonl_format(s3_server: S3Server, bucket: str, records_db: Path) -> None:
    load(records_db, settings(s3_server), f"{bucket}/records", file_format="jsonl")

    (key,) = table_keys(s3_server, bucket)
    assert key.endswith(".jsonl")
    lines = body(s3_server, bucket, key).decode().splitlines()
    assert len(lines) == 2500
    assert json.loads(lines[7]) == {
        "id": 7,
        "name": "user 7",
        "vip": True,
        "created_at": "2024-01-01 00:07:00",
    }
    assert pa_json.read_json(io.BytesIO(body(s3_server, bucket, key))).num_rows == 2500


def test_append_adds_files_and_replace_keeps_only_the_new_ones(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    first = load(records_db, settings(s3_server), f"{bucket}/records", strategy="append")
    second = load(records_db, settings(s3_server), f"{bucket}/records", strategy="append")
    assert table_keys(s3_server, bucket) == sorted(first.files + second.files)

    third = load(records_db, settings(s3_server), f"{bucket}/records", strategy="replace")
    assert table_keys(s3_server, bucket) == third.files
    assert third.deleted == 2
    loads = [k for k in keys(s3_server, bucket) if "/_dlt_loads/" in k]
    assert len(loads) == 3


@pytest.mark.parametrize("layout", [None, "{table_name}.{ext}"])
def test_replace_of_one_table_leaves_a_table_with_a_longer_name_alone(
    s3_server: S3Server, bucket: str, tmp_path: Path, layout: str | None
) -> None:
    db = make_db(
        tmp_path / "ev.db",
        "CREATE TABLE event AS SELECT 1 AS a; CREATE TABLE events AS SELECT 2 AS a",
    )
    s = settings(s3_server, layout=layout)
    events = load(db, s, f"{bucket}/ds", source_table="events", table_name="events")
    load(db, s, f"{bucket}/ds", source_table="event", table_name="event")
    load(db, s, f"{bucket}/ds", source_table="event", table_name="event")

    remaining = table_keys(s3_server, bucket)
    assert events.files[0] in remaining
    assert len(remaining) == 2


def test_append_onto_a_fixed_file_name_is_refused_before_writing(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    s = settings(s3_server, layout="{table_name}.{ext}")
    load(records_db, s, f"{bucket}/records")
    before = {k: body(s3_server, bucket, k) for k in keys(s3_server, bucket)}

    with pytest.raises(KingestError, match="append would overwrite") as err:
        load(records_db, s, f"{bucket}/records", strategy="append")

    assert err.value.reason == "UsageError"
    assert {k: body(s3_server, bucket, k) for k in keys(s3_server, bucket)} == before


@pytest.mark.parametrize("strategy", ["merge", "delete+insert"])
def test_merge_strategies_are_a_clear_error_not_an_append(
    s3_server: S3Server, bucket: str, strategy: str
) -> None:
    with pytest.raises(KingestError, match="not supported for an S3 destination") as err:
        S3Destination(settings(s3_server), f"{bucket}/records", S3WriteOptions(strategy=strategy))
    assert err.value.reason == "UsageError"
    assert keys(s3_server, bucket) == []


def test_unknown_layout_placeholder_fails_before_writing(s3_server: S3Server, bucket: str) -> None:
    with pytest.raises(KingestError, match=r"'layout'.*\{tabel\}") as err:
        S3Destination(
            settings(s3_server, layout="{tabel}/{table_name}.{ext}"),
            f"{bucket}/records",
            S3WriteOptions(),
        )
    assert err.value.reason == "InvalidUri"
    assert keys(s3_server, bucket) == []


def test_full_refresh_removes_the_tables_files_and_state(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    load(records_db, settings(s3_server), f"{bucket}/records", strategy="append")
    load(records_db, settings(s3_server), f"{bucket}/records", strategy="append")

    result = load(
        records_db, settings(s3_server), f"{bucket}/records", strategy="append", full_refresh=True
    )

    assert table_keys(s3_server, bucket) == result.files
    states = [k for k in keys(s3_server, bucket) if "/_dlt_pipeline_state/" in k]
    assert len(states) == 1
    assert result.load_id in states[0]


def test_bookkeeping_objects_have_dlts_fields(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    result = load(records_db, settings(s3_server), f"{bucket}/records")
    tree = keys(s3_server, bucket)

    def doc(folder: str) -> dict[str, Any]:
        (key,) = [k for k in tree if f"/{folder}/" in k]
        (line,) = body(s3_server, bucket, key).decode().splitlines()
        return json.loads(line)

    assert json.loads(body(s3_server, bucket, "records/init")) == {
        "initial_version": 2,
        "current_version": 2,
    }

    loads = doc("_dlt_loads")
    assert set(loads) == {"load_id", "schema_name", "status", "inserted_at", "schema_version_hash"}
    assert loads["load_id"] == result.load_id
    assert loads["status"] == 0

    version = doc("_dlt_version")
    assert set(version) == {
        "version_hash",
        "schema_name",
        "version",
        "engine_version",
        "inserted_at",
        "schema",
    }
    assert version["version_hash"] == loads["schema_version_hash"]
    assert version["schema_name"] == loads["schema_name"]
    schema = json.loads(version["schema"])
    assert schema["version_hash"] == version["version_hash"]
    assert schema["tables"]["users"]["columns"]["id"]["data_type"] == "bigint"
    assert schema["tables"]["users"]["columns"]["created_at"]["data_type"] == "timestamp"
    assert schema["tables"]["users"]["write_disposition"] == "replace"
    hex_hash = base64.b64decode(version["version_hash"]).hex()
    assert all(k.endswith(f"__{hex_hash}.jsonl") for k in tree if "_dlt_version/" in k)

    state = doc("_dlt_pipeline_state")
    assert set(state) == {
        "version",
        "engine_version",
        "pipeline_name",
        "state",
        "created_at",
        "version_hash",
        "_dlt_load_id",
    }
    assert state["_dlt_load_id"] == result.load_id
    inner = json.loads(zlib.decompress(base64.b64decode(state["state"])))
    assert inner["pipeline_name"] == state["pipeline_name"]
    assert inner["dataset_name"] == "records"


def test_schema_version_is_written_once_per_schema(
    s3_server: S3Server, bucket: str, records_db: Path, tmp_path: Path
) -> None:
    load(records_db, settings(s3_server), f"{bucket}/records")
    load(records_db, settings(s3_server), f"{bucket}/records")
    assert len([k for k in keys(s3_server, bucket) if "/_dlt_version/" in k]) == 1

    other = make_db(tmp_path / "o.db", "CREATE TABLE orders AS SELECT 1 AS id, 2.5 AS amount")
    load(
        other, settings(s3_server), f"{bucket}/records", source_table="orders", table_name="orders"
    )
    versions = [k for k in keys(s3_server, bucket) if "/_dlt_version/" in k]
    assert len(versions) == 2
    newest = json.loads(json.loads(body(s3_server, bucket, sorted(versions)[-1]))["schema"])
    assert newest["version"] == 2
    assert {"users", "orders"} <= set(newest["tables"])


def test_default_credential_chain_is_used_without_keys(
    s3_server: S3Server, bucket: str, records_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)

    result = load(records_db, S3Uri(), f"{bucket}/records")

    assert table_keys(s3_server, bucket) == result.files


def test_missing_bucket_is_reported_as_such(s3_server: S3Server, records_db: Path) -> None:
    with pytest.raises(KingestError, match="'no-such-bucket' does not exist") as err:
        load(records_db, settings(s3_server), "no-such-bucket/records")
    assert err.value.reason == "BucketNotFound"


def test_a_bucket_check_made_ahead_stops_the_load_before_any_write(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    # The check runs on a thread while the source opens (as pipeline.run starts it); the
    # load must still wait for it. A zero delay on every write request only counts them.
    s3_server.faults.add("fail", method="HEAD", status=403, code="AccessDenied", times=None)
    s3_server.faults.add("delay", method="PUT", delay_s=0, times=None)
    s3_server.faults.add("delay", method="POST", delay_s=0, times=None)
    destination = S3Destination(settings(s3_server), f"{bucket}/records", S3WriteOptions())
    destination.connect_ahead()
    with (
        DuckDBSource(records_db, DuckDBTable.parse("public.users")).open() as stream,
        pytest.raises(KingestError) as err,
    ):
        destination.write(stream.reader, "users")
    assert err.value.reason == "AccessDenied"
    assert "opening bucket" in str(err.value)
    assert [rule["hits"] for rule in s3_server.faults.rules()[1:]] == [0, 0]
    assert keys(s3_server, bucket) == []


def test_wrong_secret_is_access_denied_without_the_secret_in_the_message(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    secret = "wrong-secret-value-123"
    bad = S3Uri(
        access_key_id=s3_server.access_key_id,
        secret_access_key=secret,
        endpoint_url=s3_server.endpoint_url,
    )
    # moto accepts any key pair, so the server is told to deny writes like AWS would.
    s3_server.faults.add("fail", method="PUT", status=403, code="SignatureDoesNotMatch", times=None)
    with pytest.raises(KingestError) as err:
        load(records_db, bad, f"{bucket}/records")
    assert err.value.reason == "AccessDenied"
    assert secret not in str(err.value)


def big_db(tmp_path: Path, rows: int = 700_000) -> Path:
    # Random doubles hardly compress: ~11 MB of parquet, more than one 8 MiB upload part.
    return make_db(
        tmp_path / "big.db",
        f"CREATE TABLE users AS SELECT range AS id, random() AS x FROM range({rows})",
    )


def test_failure_mid_upload_leaves_the_previous_load_intact(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    db = big_db(tmp_path)
    s = settings(s3_server)
    previous = load(db, s, f"{bucket}/records", source_table="users")
    before = keys(s3_server, bucket)

    s3_server.faults.add("fail", method="PUT", path_regex=r"partNumber=2", status=500, times=None)
    with pytest.raises(KingestError) as err:
        load(db, s, f"{bucket}/records", source_table="users")
    assert err.value.reason == "DestinationError"
    assert any(r["hits"] >= 1 for r in s3_server.faults.rules())
    s3_server.faults.clear()

    assert keys(s3_server, bucket) == before
    assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert read_parquet(s3_server, bucket, previous.files[0]).num_rows == 700_000

    retry = load(db, s, f"{bucket}/records", source_table="users")
    assert table_keys(s3_server, bucket) == retry.files
    loads = [k for k in keys(s3_server, bucket) if "/_dlt_loads/" in k]
    assert [k.split("__")[-1] for k in loads] == [
        f"{previous.load_id}.jsonl",
        f"{retry.load_id}.jsonl",
    ]


def test_failure_after_some_files_completed_removes_them_again(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    # The third file's upload fails; the two finished files of that load must not stay.
    s3_server.faults.add("delay", method="PUT", path_regex=r"/records/users/", delay_s=0, times=2)
    s3_server.faults.add("fail", method="PUT", path_regex=r"/records/users/", times=None)

    with pytest.raises(KingestError):
        load(records_db, settings(s3_server), f"{bucket}/records", file_max_rows=1000)
    s3_server.faults.clear()

    assert [k for k in keys(s3_server, bucket) if "/users/" in k or "_dlt_loads" in k] == []


def test_append_removes_files_of_a_run_that_died_before_committing(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    first = load(records_db, settings(s3_server), f"{bucket}/records", strategy="append")
    client = s3_server.client()
    (committed,) = first.files
    # What a run killed after finishing one of its files leaves: a file, no _dlt_loads entry.
    dead_load_id = f"{float(first.load_id) - 60:.6f}"
    orphan = f"records/users/{dead_load_id}.0123456789.parquet"
    unrelated = "records/users/README.txt"
    client.copy_object(Bucket=bucket, Key=orphan, CopySource={"Bucket": bucket, "Key": committed})
    client.put_object(Bucket=bucket, Key=unrelated, Body=b"kept")

    second = load(records_db, settings(s3_server), f"{bucket}/records", strategy="append")

    assert second.orphans_removed == 1
    assert table_keys(s3_server, bucket) == sorted([committed, *second.files, unrelated])


def test_schema_and_date_placeholders_build_keys_and_replace_finds_them_again(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    layout = "{schema_name}/{table_name}/{YYYY}/{MM}/{DD}/{load_id}.{file_id}.{ext}"
    s = settings(s3_server, layout=layout)
    first = load(records_db, s, f"{bucket}/records")
    second = load(records_db, s, f"{bucket}/records")

    (key,) = table_keys(s3_server, bucket)
    assert key == second.files[0]
    started = datetime.fromtimestamp(float(second.load_id), UTC)
    assert re.fullmatch(
        rf"records/{SCHEMA}/users/{started:%Y/%m/%d}/{re.escape(second.load_id)}\.{FILE_ID}"
        r"\.parquet",
        key,
    )
    assert first.files[0] != key


@pytest.fixture
def all_types_db(tmp_path: Path) -> Path:
    return make_db(
        tmp_path / "types.db",
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); CREATE TABLE t AS SELECT "
        "1::TINYINT AS a, 2::HUGEINT AS b, uuid() AS u, INTERVAL 3 DAY AS i, 'ok'::mood AS m, "
        "[1, 2] AS l, {'x': 1} AS s, MAP {'k': 'v'} AS mp, '{\"a\": 1}'::JSON AS j, "
        "1.5::DECIMAL(10, 2) AS d, DATE '2024-01-01' AS dt, TIME '10:00' AS tm, "
        "TIMESTAMPTZ '2024-01-01 10:00+00' AS tz, 'bytes'::BLOB AS bl, 42::UBIGINT AS ub",
    )


@pytest.mark.parametrize("file_format", ["parquet", "jsonl"])
def test_every_duckdb_type_loads(
    s3_server: S3Server, bucket: str, all_types_db: Path, file_format: str
) -> None:
    result = load(
        all_types_db,
        settings(s3_server),
        f"{bucket}/ds",
        source_table="t",
        table_name="t",
        file_format=file_format,
    )
    assert result.rows == 1
    data = body(s3_server, bucket, result.files[0])
    if file_format == "parquet":
        row = pq.read_table(io.BytesIO(data)).to_pylist()[0]
        assert row["i"] == "3 days"  # intervals become text: Parquet has no such type
        assert row["m"] == "ok" and row["l"] == [1, 2] and row["mp"] == [("k", "v")]
    else:
        row = json.loads(data)
        assert row["b"] == 2 and row["i"] == "3 days" and row["s"] == {"x": 1}


def test_csv_names_the_columns_it_cannot_hold(
    s3_server: S3Server, bucket: str, all_types_db: Path
) -> None:
    with pytest.raises(KingestError, match=r"column\(s\) l, s, mp hold nested values") as err:
        load(
            all_types_db,
            settings(s3_server),
            f"{bucket}/ds",
            source_table="t",
            table_name="t",
            file_format="csv",
        )
    assert err.value.reason == "DataError"
    assert keys(s3_server, bucket) == []


def test_a_bare_bucket_is_the_dataset_root(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    result = load(records_db, settings(s3_server), bucket)

    tree = keys(s3_server, bucket)
    assert [k.split("/")[0] for k in tree] == [
        "_dlt_loads",
        "_dlt_pipeline_state",
        "_dlt_version",
        "init",
        "users",
    ]
    assert tree[-1] == result.files[0]


def test_a_transient_s3_error_is_retried(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    db = big_db(tmp_path)
    s3_server.faults.add("fail", method="PUT", path_regex=r"partNumber=1", status=503, times=1)
    s3_server.faults.add("fail", method="PUT", path_regex=r"_dlt_loads/", status=500, times=1)

    result = load(db, settings(s3_server), f"{bucket}/records", source_table="users")

    assert [r["hits"] for r in s3_server.faults.rules()] == [1, 1]
    assert read_parquet(s3_server, bucket, result.files[0]).num_rows == 700_000
    assert len([k for k in keys(s3_server, bucket) if "/_dlt_loads/" in k]) == 1


def test_full_refresh_of_one_table_keeps_the_other_tables_schema(
    s3_server: S3Server, bucket: str, records_db: Path, tmp_path: Path
) -> None:
    other = make_db(tmp_path / "o.db", "CREATE TABLE orders AS SELECT 1 AS id")
    load(
        other, settings(s3_server), f"{bucket}/records", source_table="orders", table_name="orders"
    )
    load(records_db, settings(s3_server), f"{bucket}/records", full_refresh=True)

    versions = sorted(k for k in keys(s3_server, bucket) if "/_dlt_version/" in k)
    newest = json.loads(json.loads(body(s3_server, bucket, versions[-1]))["schema"])
    assert {"users", "orders"} <= set(newest["tables"])
    assert [k for k in table_keys(s3_server, bucket) if "/orders/" in k]


def test_failure_before_replacing_keeps_the_previous_files(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    previous = load(records_db, settings(s3_server), f"{bucket}/records")
    s3_server.faults.add("fail", method="PUT", path_regex=r"/_dlt_version/", times=None)
    s3_server.faults.add("fail", method="PUT", path_regex=r"/init$", times=None)
    s3_server.client().delete_object(Bucket=bucket, Key="records/init")  # forces a write

    with pytest.raises(KingestError):
        load(records_db, settings(s3_server), f"{bucket}/records", file_format="csv")

    assert table_keys(s3_server, bucket) == previous.files
    # The state entry went up alongside the failed requests and was taken back.
    assert len([k for k in keys(s3_server, bucket) if "/_dlt_pipeline_state/" in k]) == 1


def test_failure_after_replacing_keeps_the_new_complete_files(
    s3_server: S3Server, bucket: str, records_db: Path
) -> None:
    load(records_db, settings(s3_server), f"{bucket}/records")
    s3_server.faults.add("fail", method="PUT", path_regex=r"/_dlt_loads/", times=None)

    with pytest.raises(KingestError):
        load(records_db, settings(s3_server), f"{bucket}/records", file_format="csv")
    s3_server.faults.clear()

    (left,) = table_keys(s3_server, bucket)
    assert left.endswith(".csv")  # the old parquet is gone, the new file is whole
    assert len(body(s3_server, bucket, left).decode().splitlines()) == 2501
    assert len([k for k in keys(s3_server, bucket) if "/_dlt_loads/" in k]) == 1
    assert len([k for k in keys(s3_server, bucket) if "/_dlt_pipeline_state/" in k]) == 1
    retry = load(records_db, settings(s3_server), f"{bucket}/records")
    assert table_keys(s3_server, bucket) == retry.files
