"""File formats: kinds, names, one schema across files (widening), batches conformed to it
(exact casts), the readers."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from kingest.runner import formats
from kingest.runner.errors import DataError
from kingest.runner.formats import (
    STREAMED_ROW_GROUP_BYTES,
    CsvReader,
    FileKind,
    JsonLinesReader,
    LossyValue,
    ParquetReader,
    _maybe_inexact,
    conform,
    detect_kind,
    distinct_names,
    held_bytes,
    streamed,
    unify_schemas,
    unify_types,
)
from kingest.runner.glob import Hints


@pytest.mark.parametrize(
    ("key", "hints", "kind"),
    [
        ("a/b.csv", Hints(), FileKind("csv", None)),
        ("b.CSV.GZ", Hints(), FileKind("csv", "gzip")),
        ("b.ndjson.zst", Hints(), FileKind("jsonl", "zstd")),
        ("b.pq", Hints(), FileKind("parquet", None)),
        ("b.txt", Hints(format="jsonl"), FileKind("jsonl", None)),
        ("b.csv.gz", Hints(format="csv_headless"), FileKind("csv_headless", "gzip")),
        ("b.tsv", Hints(), None),
        ("b.txt", Hints(), None),
    ],
)
def test_the_kind_comes_from_the_hint_or_the_extension(
    key: str, hints: Hints, kind: FileKind | None
) -> None:
    assert detect_kind(key, hints) == kind


@pytest.mark.parametrize(
    ("a", "b", "unified"),
    [
        (pa.int32(), pa.int64(), pa.int64()),
        (pa.int64(), pa.float64(), pa.float64()),
        (pa.null(), pa.string(), pa.string()),
        (pa.date32(), pa.timestamp("us"), pa.timestamp("us")),
        (pa.timestamp("us"), pa.timestamp("us", tz="UTC"), pa.timestamp("us", tz="UTC")),
        (pa.int64(), pa.string(), pa.string()),
        (pa.bool_(), pa.int64(), pa.string()),
        (pa.struct([("x", pa.int64())]), pa.int64(), None),
    ],
)
def test_two_types_unify_to_the_type_holding_both(
    a: pa.DataType, b: pa.DataType, unified: pa.DataType | None
) -> None:
    assert unify_types(a, b) == unified
    assert unify_types(b, a) == unified


def test_one_schema_for_all_files_keeps_first_seen_order_and_widens() -> None:
    one = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("ns"))])
    two = pa.schema([("extra", pa.string()), ("id", pa.float64())])
    unified = unify_schemas([("s3://b/1.csv", one), ("s3://b/2.csv", two)])
    assert unified == pa.schema(
        [("id", pa.float64()), ("ts", pa.timestamp("us")), ("extra", pa.string())]
    )


def test_types_that_cannot_unify_name_the_column_and_both_files() -> None:
    nested = pa.schema([("v", pa.struct([("x", pa.int64())]))])
    flat = pa.schema([("v", pa.int64())])
    with pytest.raises(DataError, match=r"'v' is .* in s3://b/1.json but int64 in s3://b/2"):
        unify_schemas([("s3://b/1.json", nested), ("s3://b/2.json", flat)])


def test_a_batch_is_conformed_to_the_target_schema() -> None:
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2], pa.int32()),
            "ts": pa.array([1_000_000_000, 2_000_001_000], pa.timestamp("ns")),
        }
    )
    target = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us")), ("gone", pa.string())])
    out = conform(batch, target)
    assert out.schema == target
    assert out.column("gone").null_count == 2
    assert out.column("ts").to_pylist() == [
        datetime(1970, 1, 1, 0, 0, 1),
        datetime(1970, 1, 1, 0, 0, 2, 1),
    ]


def test_csv_reads_quoted_line_breaks_and_continues_after_the_header() -> None:
    reader = CsvReader(Hints(), (), headless=False)
    text = b'id,name\n1,"two\nlines"\n2,plain\n'
    own = reader.schema(pa.BufferReader(text))
    assert own == pa.schema([("id", pa.int64()), ("name", pa.string())])
    rows = pa.Table.from_batches(list(reader.batches(pa.BufferReader(text), own, own)))
    assert rows.to_pylist() == [{"id": 1, "name": "two\nlines"}, {"id": 2, "name": "plain"}]
    rest = b"3,more\n4,end\n"
    batches = list(reader.batches(pa.BufferReader(rest), own, own, after_header=True))
    assert pa.Table.from_batches(batches).column("id").to_pylist() == [3, 4]


def test_csv_big_whole_numbers_are_found_next_to_long_fractions() -> None:
    reader = CsvReader(Hints(), (), headless=False)
    text = b"big,f\n12345678901234567890,0.1234567890123456\n7,1.5\n"
    own = reader.schema(pa.BufferReader(text))
    assert own == pa.schema([("big", pa.decimal128(38, 0)), ("f", pa.float64())])


@pytest.mark.parametrize(
    ("sample", "second_look"),
    [
        (b"f,g\n0.1234567890123456,-2.1234567890123456e-05\n", False),
        (b"t\n2024-01-01 00:00:00\n", False),
        (b"n\n12345678901234567\n", True),
        (b"a,n\n1,-1234567890123456.5\n", True),
        (b"id\n007\n", True),
        (b'id\n"-01"\n', True),
    ],
)
def test_only_a_leading_zero_or_a_long_whole_part_asks_for_a_second_parse(
    sample: bytes, second_look: bool
) -> None:
    assert _maybe_inexact(pa.BufferReader(sample)) is second_look


def test_jsonl_tells_dates_and_zoned_timestamps_apart_by_their_values() -> None:
    reader = JsonLinesReader(Hints(), ())
    text = b'{"d": "2024-01-02", "t": "2024-01-02T10:00:00Z", "n": 1}\n{"n": 2}\n'
    own = reader.schema(pa.BufferReader(text))
    assert own.field("d").type == pa.date32()
    assert own.field("t").type == pa.timestamp("us", tz="UTC")
    target = pa.schema(list(own))
    batches = [conform(b, target) for b in reader.batches(pa.BufferReader(text), own, target)]
    assert pa.Table.from_batches(batches).column("d").to_pylist()[0] == date(2024, 1, 2)


def jsonl_records(n: int) -> bytes:
    lines = []
    for i in range(n):
        record = {"id": i, "d": f"2024-01-{1 + i % 28:02d}", "t": f"2024-01-02T10:00:{i % 60:02d}Z"}
        record |= {"x": 1.5 * i, "tags": {"k": f"v{i}"}} if i % 3 else {"note": None}
        lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode()


def rows_read(reader: JsonLinesReader, text: bytes, start: int, own: pa.Schema) -> list[dict]:
    stream = pa.BufferReader(text)
    stream.seek(start)
    return [row for b in reader.batches(stream, own, own) for row in conform(b, own).to_pylist()]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_jsonl_first_block_rows_are_kept_as_parsed_and_the_rest_read_from_its_end(
    monkeypatch: pytest.MonkeyPatch, newline: str
) -> None:
    monkeypatch.setattr(formats, "INFER_BLOCK_SIZE", 4000)
    text = jsonl_records(300).replace(b"\n", newline.encode())
    reader = JsonLinesReader(Hints(), ())
    own, head = reader.schema_and_head(pa.BufferReader(text))
    assert head is not None and head.end is not None and 0 < head.end <= 4000
    assert text[head.end - 1 : head.end] == b"\n"
    kept = [row for b in head.batches for row in conform(b, own).to_pylist()]
    assert len(kept) == text[: head.end].count(b"\n")
    assert kept + rows_read(reader, text, head.end, own) == rows_read(reader, text, 0, own)
    assert own.field("d").type == pa.date32() and kept[0]["d"] == date(2024, 1, 1)


def test_a_jsonl_file_within_the_first_block_is_kept_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(formats, "INFER_BLOCK_SIZE", 40_000)
    reader = JsonLinesReader(Hints(), ())
    for text in (jsonl_records(50), jsonl_records(50).rstrip(b"\n")):
        own, head = reader.schema_and_head(pa.BufferReader(text))
        assert head is not None and head.end is None
        kept = [row for b in head.batches for row in conform(b, own).to_pylist()]
        assert kept == rows_read(reader, text, 0, own) and len(kept) == 50


@pytest.mark.parametrize(
    "text",
    [
        jsonl_records(20) + b"\n" + jsonl_records(200),  # a blank line: rows != lines
        b'{"big": 92233720368547758070}\n' + jsonl_records(200),  # read again as a DECIMAL
    ],
    ids=["blank-line", "decimal"],
)
def test_no_first_block_rows_are_kept_where_they_could_differ(
    monkeypatch: pytest.MonkeyPatch, text: bytes
) -> None:
    monkeypatch.setattr(formats, "INFER_BLOCK_SIZE", 4000)
    own, head = JsonLinesReader(Hints(), ()).schema_and_head(pa.BufferReader(text))
    assert head is None
    assert len(own) >= 5


def test_repeated_names_get_the_first_free_suffix() -> None:
    assert distinct_names(["id", "v", "v", "v_1", "v"]) == ["id", "v", "v_2", "v_1", "v_3"]
    assert distinct_names(["a", "b"]) == ["a", "b"]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (pa.int32(), pa.int64(), pa.int64()),
        (pa.uint64(), pa.uint32(), pa.uint64()),
        (pa.uint64(), pa.int64(), pa.decimal128(20, 0)),
        (pa.int64(), pa.decimal128(10, 2), pa.decimal128(21, 2)),
        (pa.decimal128(5, 2), pa.decimal128(14, 4), pa.decimal128(14, 4)),
        (pa.decimal128(38, 0), pa.decimal128(10, 2), None),
        (pa.int64(), pa.float64(), pa.float64()),
        (pa.decimal128(10, 2), pa.float64(), pa.float64()),
    ],
)
def test_numbers_widen_to_a_type_holding_both(
    a: pa.DataType, b: pa.DataType, expected: pa.DataType | None
) -> None:
    assert unify_types(a, b) == expected
    assert unify_types(b, a) == expected


def test_conform_names_the_first_integer_a_double_would_round() -> None:
    batch = pa.record_batch({"v": pa.array([1, 2**53, 2**53 + 1, 2**60], pa.int64())})
    with pytest.raises(LossyValue) as caught:
        conform(batch, pa.schema([("v", pa.float64())]))
    assert (caught.value.column, caught.value.row, caught.value.value) == ("v", 3, str(2**53 + 1))


def test_conform_keeps_timestamps_that_lose_no_digit() -> None:
    ns = pa.array([1_700_000_000_123_456_000, None], pa.timestamp("ns", tz="Europe/Berlin"))
    out = conform(pa.record_batch({"t": ns}), pa.schema([("t", pa.timestamp("us", tz="UTC"))]))
    assert out.column(0).cast(pa.int64()).to_pylist() == [1_700_000_000_123_456, None]


def test_conform_names_the_first_decimal_no_double_equals() -> None:
    exact = pa.array([Decimal("0.10"), Decimal("123456.25"), None], pa.decimal128(10, 2))
    out = conform(pa.record_batch({"d": exact}), pa.schema([("d", pa.float64())]))
    assert out.column(0).to_pylist() == [0.1, 123456.25, None]
    big = pa.array([Decimal(1), Decimal("92233720368547758070")], pa.decimal128(38, 0))
    with pytest.raises(LossyValue) as caught:
        conform(pa.record_batch({"d": big}), pa.schema([("d", pa.float64())]))
    assert (caught.value.row, caught.value.value) == (2, "92233720368547758070")


def _large_row_groups(path: Path, groups: int) -> pa.Table:
    """A Parquet file of `groups` row groups of ~40 MB decoded, a few MB compressed."""
    rows = 360_000
    text = pa.array(["the same hundred characters, again and again " * 2 + "1234567890"] * rows)
    table = pa.table(
        {"n": pa.array(range(rows * groups)), "text": pa.concat_arrays([text] * groups)}
    )
    pq.write_table(table, path, row_group_size=rows, use_dictionary=False)
    return table


@pytest.mark.parametrize("split", [False, True])
def test_a_large_row_group_is_decoded_a_batch_at_a_time(tmp_path: Path, split: bool) -> None:
    table = _large_row_groups(tmp_path / "big.parquet", groups=2)
    fragment = ParquetReader.fragment(str(tmp_path / "big.parquet"), pafs.LocalFileSystem(), None)
    assert fragment.metadata.row_group(0).total_byte_size > STREAMED_ROW_GROUP_BYTES
    reader = ParquetReader(None)
    before, held, rows = pa.total_allocated_bytes(), 0, 0
    for piece in list(fragment.split_by_row_group()) if split else [fragment]:
        for batch in reader.batches(piece):
            assert batch.num_rows <= reader.batch_rows
            assert pa.Table.from_batches([batch]).equals(table.slice(rows, batch.num_rows))
            rows += batch.num_rows
            held = max(held, pa.total_allocated_bytes() - before)
    assert rows == table.num_rows
    # A whole decoded row group would be ~40 MB.
    assert held < 8e6, held


def test_a_streamed_row_group_holds_its_compressed_bytes_a_scanned_one_all_of_itself(
    tmp_path: Path,
) -> None:
    _large_row_groups(tmp_path / "big.parquet", groups=1)
    pq.write_table(pa.table({"n": range(1000)}), tmp_path / "small.parquet")
    big = pq.ParquetFile(tmp_path / "big.parquet").metadata.row_group(0)
    small = pq.ParquetFile(tmp_path / "small.parquet").metadata.row_group(0)
    assert streamed(big) and not streamed(small)
    assert held_bytes(small) == small.total_byte_size
    compressed = sum(big.column(c).total_compressed_size for c in range(big.num_columns))
    assert held_bytes(big) == compressed < big.total_byte_size / 4


def test_a_streamed_row_group_reads_every_type_as_the_scan_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = 3000
    table = pa.table(
        {
            "n": pa.array([None if i % 7 == 0 else i for i in range(rows)], pa.int64()),
            "amount": pa.array([Decimal(i) / 100 for i in range(rows)], pa.decimal128(12, 2)),
            "at": pa.array(range(rows), pa.timestamp("us", tz="Europe/Berlin")),
            "day": pa.array(range(rows), pa.date32()),
            "flag": pa.array([i % 3 == 0 for i in range(rows)]),
            "kind": pa.array([["a", "b", "c"][i % 3] for i in range(rows)]).dictionary_encode(),
            "tags": pa.array([[f"t{i}"] * (i % 3) for i in range(rows)]),
            "point": pa.array([{"x": i, "y": str(i)} for i in range(rows)]),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=1000)
    fragment = ParquetReader.fragment(str(tmp_path / "t.parquet"), pafs.LocalFileSystem(), None)
    reader = ParquetReader(None)
    scanned = pa.Table.from_batches(list(reader.batches(fragment)))
    monkeypatch.setattr("kingest.runner.formats.STREAMED_ROW_GROUP_BYTES", 0)
    assert streamed(fragment.metadata.row_group(0))
    streamed_rows = pa.Table.from_batches(list(reader.batches(fragment)))
    assert streamed_rows.equals(scanned)
    assert scanned.equals(table)
