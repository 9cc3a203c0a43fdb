"""Values arrive as they were: `kingest ingest` from S3 into DuckDB, each value compared with
its source, or the run fails naming the file, line, row and column (issue 14)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kingest.runner.errors import InvalidUri
from kingest.runner.interfaces import LoadOptions
from kingest.runner.s3_client import session_for
from kingest.runner.s3_source import S3Source
from kingest.runner.uri import S3Uri, parse_uri
from tests.platform.processes import free_port
from tests.platform.s3 import S3Server
from tests.runner.test_s3_to_duckdb import load, put, query, run


def types_of(db: Path) -> dict[str, str]:
    sql = ("SELECT column_name, data_type FROM information_schema.columns "
           "WHERE table_name = 't' AND NOT starts_with(column_name, '_dlt_')")  # fmt: skip
    rows = query(db, sql)
    return dict(rows)


def loaded(
    s3: S3Server,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, bytes],
    *extra: str,
    uri: str | None = None,
) -> Path:
    """Put ``files`` under ``f/``, load them all into ``raw.t`` and return the database."""
    for key, body in files.items():
        put(s3, bucket, f"f/{key}", body)
    db = tmp_path / "fidelity.duckdb"
    argv = load(s3, bucket, db, "f/*", *extra)
    if uri is not None:
        argv[1] = uri
    code, _, out = run(capsys, *argv)
    assert code == 0, out
    return db


def failed(
    s3: S3Server,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, bytes],
    *extra: str,
) -> tuple[int, dict[str, Any], str]:
    """Put ``files`` under ``f/`` and run a load expected to fail; the database must not exist."""
    for key, body in files.items():
        put(s3, bucket, f"f/{key}", body)
    db = tmp_path / "failed.duckdb"
    code, result, out = run(capsys, *load(s3, bucket, db, "f/*", *extra))
    assert not db.exists()
    return code, result, out


def assert_data_error(code: int, result: dict[str, Any], *parts: str) -> None:
    """The run failed with a data error (exit 6) whose message holds every one of ``parts``."""
    assert (code, result["reason"]) == (6, "DataError"), result
    missing = [part for part in parts if part not in result["error"]]
    assert not missing, (missing, result["error"])


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


# -- null tokens ------------------------------------------------------------------------------


def test_a_null_token_in_an_integer_column_is_kept_as_text(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b"id,v,w\n1,n/a,1\n2,3,oops\n"
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.csv": body})
    assert query(db, "SELECT id, v, w FROM raw.t ORDER BY id") == [
        (1, "n/a", "1"),
        (2, "3", "oops"),
    ]
    assert types_of(db) == {"id": "BIGINT", "v": "VARCHAR", "w": "VARCHAR"}


def test_only_the_empty_field_is_null_by_default(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = ["NA", "N/A", "n/a", "null", "NULL", "NaN", "-NaN", "#N/A", "None", "nan"]
    body = "id,text,num\n" + "".join(f"{i},{t},{i}\n" for i, t in enumerate(tokens))
    body += f"{len(tokens)},,\n"
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.csv": body.encode()})
    rows = query(db, "SELECT text, num FROM raw.t ORDER BY id")
    assert rows == [(t, i) for i, t in enumerate(tokens)] + [(None, None)]


def test_null_tokens_are_null_when_the_source_uri_names_them(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b"id,v,w\n1,NA,x\n2,3,n/a\n3,,NA\n4,5,NAN\n"
    uri = s3_server.uri(nullstr="NA,n/a")
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.csv": body}, uri=uri)
    assert query(db, "SELECT id, v, w FROM raw.t ORDER BY id") == [
        (1, None, "x"), (2, 3, None), (3, None, None), (4, 5, "NAN"),
    ]  # fmt: skip
    assert types_of(db) == {"id": "BIGINT", "v": "BIGINT", "w": "VARCHAR"}


def test_null_tokens_are_a_source_parameter_also_from_the_environment() -> None:
    env = {"KINGEST_SOURCE_NULLSTR": "NA,,#N/A"}
    assert S3Uri.from_parsed(parse_uri("s3://?region=x", "source", env)).null_tokens == (
        "NA",
        "#N/A",
    )
    with pytest.raises(InvalidUri, match="nullstr"):
        S3Uri.from_parsed(parse_uri("s3://?nullstr=NA", "destination", {}))


# -- names ------------------------------------------------------------------------------------


def test_duplicate_header_names_keep_every_column_under_distinct_names(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b"id,amount,amount,amount_1\n1,10,x,y\n2,20,z,w\n"
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.csv": body})
    assert query(db, "SELECT id, amount, amount_2, amount_1 FROM raw.t ORDER BY id") == [
        (1, 10, "x", "y"), (2, 20, "z", "w"),
    ]  # fmt: skip
    assert list(types_of(db)) == ["id", "amount", "amount_2", "amount_1"]


def test_duplicate_header_names_in_several_files_line_up(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {"a.csv": b"id,v,v\n1,2,3\n", "b.csv": b"id,v,v\n4,5,6\n"}
    db = loaded(s3_server, bucket, tmp_path, capsys, files)
    assert query(db, "SELECT id, v, v_1 FROM raw.t ORDER BY id") == [(1, 2, 3), (4, 5, 6)]


# -- numbers ----------------------------------------------------------------------------------


def test_integers_beyond_64_bits_keep_every_digit(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = "92233720368547758070"
    body = f"id,big,huge\n1,{big},{'9' * 40}\n2,-5,1\n".encode()
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.csv": body})
    assert query(db, "SELECT big, huge FROM raw.t ORDER BY id") == [
        (Decimal(big), "9" * 40), (Decimal(-5), "1"),
    ]  # fmt: skip
    assert types_of(db) == {"id": "BIGINT", "big": "DECIMAL(38,0)", "huge": "VARCHAR"}


def test_integers_and_fractions_from_several_files_unify_as_double(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {"a.csv": b"id,v\n1,1\n2,9007199254740992\n", "b.csv": b"id,v\n3,2.5\n"}
    db = loaded(s3_server, bucket, tmp_path, capsys, files)
    assert query(db, "SELECT v FROM raw.t ORDER BY id") == [(1.0,), (9007199254740992.0,), (2.5,)]


@pytest.mark.parametrize(
    ("first", "value", "fractions_in_another_file"),
    [
        ("1.5", "92233720368547758070", False),
        ("1", "9007199254740993", True),  # BIGINT in a.csv, widened to DOUBLE
        ("1", "92233720368547758070", True),  # DECIMAL(38,0) in a.csv, widened to DOUBLE
    ],
)
def test_a_whole_number_a_double_would_round_fails_naming_file_line_row_and_column(
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    first: str,
    value: str,
    fractions_in_another_file: bool,
) -> None:
    files = {"a.csv": f"id,v\n1,{first}\n2,{value}\n".encode()}
    if fractions_in_another_file:
        files["b.csv"] = b"id,v\n3,2.5\n"
    code, result, _ = failed(s3_server, bucket, tmp_path, capsys, files)
    assert_data_error(code, result, f"s3://{bucket}/f/a.csv", "line 3", "row 2", "'v'", value)


def test_leading_zeros_keep_an_id_column_as_text(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b"id,zip,n\n007,01234,0\n010,99999,10\n"
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.csv": body})
    assert query(db, "SELECT id, zip, n FROM raw.t ORDER BY id") == [
        ("007", "01234", 0), ("010", "99999", 10),
    ]  # fmt: skip
    assert types_of(db) == {"id": "VARCHAR", "zip": "VARCHAR", "n": "BIGINT"}


def test_exponents_and_special_floats_are_doubles_of_the_same_value(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b"id,v\n1,1e5\n2,2.5E-3\n3,-0.0\n4,12345678.125\n"
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.csv": body})
    assert query(db, "SELECT v FROM raw.t ORDER BY id") == [
        (1e5,), (2.5e-3,), (-0.0,), (12345678.125,),
    ]  # fmt: skip
    assert types_of(db)["v"] == "DOUBLE"


def test_boolean_words_are_booleans_and_other_words_stay_text(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b"id,b,w\n1,TRUE,TRUE\n2,False,False\n3,true,yes\n"
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.csv": body})
    assert query(db, "SELECT b, w FROM raw.t ORDER BY id") == [
        (True, "TRUE"), (False, "False"), (True, "yes"),
    ]  # fmt: skip
    assert types_of(db) == {"id": "BIGINT", "b": "BOOLEAN", "w": "VARCHAR"}


def test_parquet_decimals_keep_their_precision_and_scale(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = [Decimal("12345678.90"), Decimal("-0.01"), None]
    fine = [Decimal("1234567890123456789012345678.0123456789"), Decimal("0E-10"), None]
    table = pa.table({
        "id": [1, 2, 3],
        "price": pa.array(values, pa.decimal128(10, 2)),
        "fine": pa.array(fine, pa.decimal128(38, 10)),
    })  # fmt: skip
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.parquet": parquet(table)})
    assert query(db, "SELECT price, fine FROM raw.t ORDER BY id") == list(
        zip(values, fine, strict=True)
    )
    assert types_of(db) == {"id": "BIGINT", "price": "DECIMAL(10,2)", "fine": "DECIMAL(38,10)"}


def test_parquet_decimals_of_different_scales_unify_without_rounding(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    columns = [
        pa.array([Decimal("1.25")], pa.decimal128(5, 2)),
        pa.array([Decimal("123456789.0001")], pa.decimal128(14, 4)),
        pa.array([2**62], pa.int64()),
    ]
    files = {f"{i}.parquet": parquet(pa.table({"id": [i], "v": v})) for i, v in enumerate(columns)}
    db = loaded(s3_server, bucket, tmp_path, capsys, files)
    assert query(db, "SELECT v FROM raw.t ORDER BY id") == [
        (Decimal("1.25"),), (Decimal("123456789.0001"),), (Decimal(2**62),),
    ]  # fmt: skip
    assert types_of(db)["v"] == "DECIMAL(23,4)"


# -- times ------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Berlin", "+05:30"])
def test_parquet_timestamps_of_every_unit_and_zone_keep_their_instant(
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    unit: str,
    tz: str | None,
) -> None:
    fraction = {"s": 0, "ms": 123_000, "us": 123_456, "ns": 123_456}[unit]
    instant = datetime(2024, 3, 31, 0, 30, 15, fraction)  # 02:30 Berlin does not exist that day
    table = pa.table({"id": [1, 2], "ts": pa.array([instant, None], pa.timestamp(unit, tz=tz))})
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.parquet": parquet(table)})
    if tz is None:
        assert types_of(db)["ts"] == "TIMESTAMP"
        assert query(db, "SELECT ts FROM raw.t ORDER BY id") == [(instant,), (None,)]
    else:
        assert types_of(db)["ts"] == "TIMESTAMP WITH TIME ZONE"
        epoch = query(db, "SELECT epoch_us(ts) FROM raw.t ORDER BY id")
        expected = instant.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        assert epoch == [(expected // timedelta(microseconds=1),), (None,)]


def test_nanoseconds_a_timestamp_cannot_hold_fail_naming_file_row_and_column(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = pa.array([1_700_000_000_000_000_000, 1_700_000_000_000_000_001], pa.timestamp("ns"))
    table = pa.table({"id": [1, 2], "ts": at})
    code, result, _ = failed(s3_server, bucket, tmp_path, capsys, {"a.parquet": parquet(table)})
    assert_data_error(code, result, f"s3://{bucket}/f/a.parquet", "row 2", "'ts'")


def test_csv_nanoseconds_fail_naming_line_row_and_column(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b"id,ts\n1,2024-01-01 10:00:00.123456\n2,2024-01-01 10:00:00.123456789\n"
    code, result, _ = failed(s3_server, bucket, tmp_path, capsys, {"a.csv": body})
    assert_data_error(code, result, "line 3", "row 2", "'ts'", "2024-01-01 10:00:00.123456789")


def test_json_timestamps_with_offsets_keep_their_instant_and_fractions_stay_text(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = (b'{"id": 1, "ts": "2024-01-01T10:00:00+02:00", "f": "2024-01-01T10:00:00.123456Z"}\n'
            b'{"id": 2, "ts": "2024-01-01T08:30:00Z", "f": "2024-01-01T10:00:00Z"}\n'
            b'{"id": 3, "ts": null, "f": null}\n')  # fmt: skip
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.jsonl": body})
    rows = query(db, "SELECT ts, f FROM raw.t ORDER BY id")
    assert rows == [
        (datetime(2024, 1, 1, 8, tzinfo=UTC), "2024-01-01T10:00:00.123456Z"),
        (datetime(2024, 1, 1, 8, 30, tzinfo=UTC), "2024-01-01T10:00:00Z"),
        (None, None),
    ]


# -- JSON -------------------------------------------------------------------------------------


def test_json_empty_string_null_and_missing_field_stay_apart(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b'{"id": 1, "s": "", "n": 0}\n{"id": 2, "s": null, "n": null}\n{"id": 3}\n'
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.jsonl": body})
    assert query(db, "SELECT s, n FROM raw.t ORDER BY id") == [("", 0), (None, None), (None, None)]


def test_json_big_integers_and_leading_zero_strings_arrive_unchanged(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b'{"id": "007", "n": 9007199254740993, "b": true}\n{"id": "010", "n": -1, "b": false}\n'
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.jsonl": body})
    assert query(db, "SELECT id, n, b FROM raw.t ORDER BY id") == [
        ("007", 9007199254740993, True), ("010", -1, False),
    ]  # fmt: skip


def test_json_integers_beyond_64_bits_keep_every_digit(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b'{"id": 1, "n": 92233720368547758070, "f": 1e5}\n{"id": 2, "n": -7, "f": 2.5}\n'
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.jsonl": body})
    assert query(db, "SELECT n, f FROM raw.t ORDER BY id") == [
        (Decimal("92233720368547758070"), 1e5), (Decimal(-7), 2.5),
    ]  # fmt: skip
    assert types_of(db) == {"id": "BIGINT", "n": "DECIMAL(38,0)", "f": "DOUBLE"}


def test_json_big_integers_among_fractions_keep_every_digit_as_columns_decimal(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b'{"id": 1, "n": 92233720368547758070}\n{"id": 2, "n": 1.5}\n'
    db = loaded(s3_server, bucket, tmp_path, capsys, {"a.jsonl": body}, "--columns", "n:decimal")
    assert query(db, "SELECT n FROM raw.t ORDER BY id") == [
        (Decimal("92233720368547758070"),), (Decimal("1.5"),),
    ]  # fmt: skip


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written", ["wJalr+XUtnFEMI/K7MDENG+bPxRfiCY", "wJalr%2BXUtnFEMI%2FK7MDENG%2BbPxRfiCY"]
)
def test_a_secret_key_is_taken_raw_or_percent_encoded(written: str) -> None:
    uri = parse_uri(f"s3://?access_key_id=AK+1&secret_access_key={written}", "source", {})
    model = S3Uri.from_parsed(uri)
    assert model.secret_access_key is not None and model.access_key_id is not None
    assert model.secret_access_key.get_secret_value() == "wJalr+XUtnFEMI/K7MDENG+bPxRfiCY"
    assert model.access_key_id.get_secret_value() == "AK+1"
    assert uri.secrets() and "wJalr+XUtnFEMI/K7MDENG+bPxRfiCY" in uri.secrets()


def test_a_raw_secret_reaches_the_s3_credentials_unchanged() -> None:
    raw = "wJalr+XUtnFEMI/K7MDENG+bPxRfiCY"
    uri = parse_uri(f"s3://?access_key_id=AKIA1&secret_access_key={raw}", "source", {})
    source = S3Source.from_uri(uri, "bucket/a.csv", LoadOptions())
    credentials = session_for(source.uri).get_credentials()
    assert credentials is not None and credentials.secret_key == raw


# -- positions and exit codes -----------------------------------------------------------------


def test_a_malformed_row_is_reported_with_file_line_and_the_row_as_read(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "id,v\n" + "".join(f"{i},{i}\n" for i in range(1, 999)) + "999,9,extra\n1000,1\n"
    code, result, _ = failed(s3_server, bucket, tmp_path, capsys, {"a.csv": body.encode()})
    assert_data_error(
        code, result, f"s3://{bucket}/f/a.csv", "line 1,000", "row 999", "999,9,extra"
    )
    assert "after data row" not in result["error"]


def test_a_bad_value_deep_in_a_file_is_reported_with_its_line_and_column(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = "".join(f'{i},"multi\nline {i}"\n' for i in range(1, 40_000))
    body = f"id,v\n{rows}seven,x\n".encode()
    code, result, _ = failed(
        s3_server, bucket, tmp_path, capsys, {"a.csv": body}, "--columns", "id:bigint"
    )
    assert_data_error(code, result, "line 80,000", "row 40,000", "'id'", "seven")


def test_a_malformed_json_line_is_reported_with_its_line_row_and_text(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b'{"id": 1}\n\n{"id": 2}\n{"id": 3, "v": \n{"id": 4}\n'
    code, result, _ = failed(s3_server, bucket, tmp_path, capsys, {"a.jsonl": body})
    assert_data_error(code, result, f"s3://{bucket}/f/a.jsonl", "line 4, row 3", '{"id": 3, "v": ')


def test_an_unreachable_endpoint_is_source_unavailable_exit_8(
    s3_server: S3Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "u.duckdb"
    argv = load(s3_server, bucket, db, "*.csv")
    argv[1] = s3_server.uri(endpoint_url=f"http://127.0.0.1:{free_port()}")
    code, result, out = run(capsys, *argv)
    assert (code, result["reason"]) == (8, "SourceUnavailable")
    assert s3_server.secret_access_key not in out and not db.exists()
    assert "127.0.0.1" in result["error"]
