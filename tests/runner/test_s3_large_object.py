"""One large object read as byte ranges (or row groups) in parallel: the same rows, in the
same order, as one stream would read; a failure anywhere leaves the destination as it was.

Ranges are made tiny here (a few hundred bytes) so that small objects have many cuts: every
cut falls somewhere different in a record, a quoted value, a multi-byte character.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kingest.runner import byte_ranges, formats, s3_source
from kingest.runner.cli import ingest
from kingest.runner.interfaces import LoadOptions
from kingest.runner.s3_source import S3Source
from kingest.runner.uri import parse_uri
from tests.platform.s3 import S3Server

RANGE = 300


@pytest.fixture
def ranges_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Small ranges; returns the start of every range read, as it is read."""
    monkeypatch.setattr(byte_ranges, "RANGE_BYTES", RANGE)
    monkeypatch.setattr(byte_ranges, "SPLIT_FROM_BYTES", 3 * RANGE)
    starts: list[int] = []
    real = s3_source.read_lines

    def spy(file: pa.NativeFile, start: int, end: int, size: int) -> tuple[int, pa.Buffer]:
        starts.append(start)
        return real(file, start, end, size)

    monkeypatch.setattr(s3_source, "read_lines", spy)
    return starts


def put(s3: S3Server, bucket: str, key: str, body: bytes) -> None:
    s3.client().put_object(Bucket=bucket, Key=key, Body=body)


def load(s3: S3Server, bucket: str, key: str, db: Path, *extra: str) -> tuple[int, str]:
    argv = [
        "--source-uri", s3.uri(), "--source-table", f"{bucket}/{key}",
        "--dest-uri", f"duckdb:///{db}", "--dest-table", "raw.t", "--progress", "none", *extra,
    ]  # fmt: skip
    code = ingest(argv, environ={})
    return code, ""


def rows(db: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * EXCLUDE (_dlt_load_id) FROM raw.t ORDER BY id").fetchall()


def source_rows(s3: S3Server, bucket: str, key: str) -> list[dict[str, Any]]:
    """The rows the S3 source streams for ``key``, in stream order."""
    uri = parse_uri(s3.uri(), "source", {})
    stream = S3Source.from_uri(uri, f"{bucket}/{key}", LoadOptions(extract_parallelism=4)).open()
    try:
        return stream.reader.read_all().to_pylist()
    finally:
        if stream.on_close:
            stream.on_close()


@dataclass
class Reads:
    """A fresh bucket read with tiny ranges; ``ranges`` are the starts of those read."""

    s3: S3Server
    bucket: str
    monkeypatch: pytest.MonkeyPatch
    ranges: list[int]

    def put(self, key: str, body: bytes) -> None:
        put(self.s3, self.bucket, key, body)

    def both_ways(self, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows streamed from ``key`` in ranges, and as one stream (splitting off)."""
        split = source_rows(self.s3, self.bucket, key)
        with self.monkeypatch.context() as patch:
            patch.setattr(byte_ranges, "SPLIT_FROM_BYTES", 2**62)
            whole = source_rows(self.s3, self.bucket, key)
        return split, whole


@pytest.fixture
def reads(
    s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch, ranges_read: list[int]
) -> Reads:
    return Reads(s3_server, bucket, monkeypatch, ranges_read)


def csv_body(n: int, newline_every: int | None = None) -> bytes:
    lines = ["id,name,price,note"]
    for i in range(n):
        note = f'"line {i}\nand more"' if newline_every and i % newline_every == 0 else f"n{i}"
        lines.append(f'{i},"Zoë ""{i}"", Köln",{i * 1.5},{note}')
    return ("\n".join(lines) + "\n").encode()


def test_a_large_csv_is_read_in_ranges_with_the_rows_of_one_stream(reads: Reads) -> None:
    reads.put("big.csv", csv_body(400))
    split, whole = reads.both_ways("big.csv")
    assert len(reads.ranges) > 20
    assert split == whole and len(split) == 400
    assert split[7] == {"id": 7, "name": 'Zoë "7", Köln', "price": 10.5, "note": "n7"}


def test_quoted_line_breaks_across_cuts_give_the_rows_of_one_stream(reads: Reads) -> None:
    reads.put("quoted.csv", csv_body(400, newline_every=50))
    split, whole = reads.both_ways("quoted.csv")
    assert split == whole and len(split) == 400
    assert split[50]["note"] == "line 50\nand more"


def test_a_cut_inside_a_quoted_value_in_every_range_still_reads_right(reads: Reads) -> None:
    # Values of many lines each, longer than a range: most cuts fall inside quotes, where a
    # line looks like a record ("1,2") but is not.
    value = "\n".join(f"{j},{j}" for j in range(60))
    body = "id,text\n" + "".join(f'{i},"{value}"\n' for i in range(30))
    reads.put("long.csv", body.encode())
    split, whole = reads.both_ways("long.csv")
    assert split == whole == [{"id": i, "text": value} for i in range(30)]


def test_lines_longer_than_a_range_are_read_whole(reads: Reads) -> None:
    body = "id,text\n" + "".join(f"{i},{'x' * (RANGE * (i % 4))}\n" for i in range(20))
    reads.put("wide.csv", body.encode())
    split, whole = reads.both_ways("wide.csv")
    assert split == whole and [r["id"] for r in split] == list(range(20))


def test_a_gzip_file_is_never_cut(reads: Reads) -> None:
    reads.put("big.csv.gz", gzip.compress(csv_body(2000)))
    split, whole = reads.both_ways("big.csv.gz")
    assert reads.ranges == []
    assert split == whole and len(split) == 2000


def test_a_large_jsonl_file_is_read_in_ranges_with_the_rows_of_one_stream(reads: Reads) -> None:
    records = [
        {"id": i, "text": f"a\nb {i} ü", "at": f"2024-01-{1 + i % 28:02d}T10:00:00Z"}
        for i in range(300)
    ]
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    reads.put("big.jsonl", body)
    split, whole = reads.both_ways("big.jsonl")
    assert len(reads.ranges) > 20
    assert split == whole and len(split) == 300 and split[3]["text"] == "a\nb 3 ü"


def test_a_parquet_file_is_read_row_group_by_row_group_in_order(reads: Reads) -> None:
    table = pa.table({"id": list(range(5000)), "name": [f"n{i}" for i in range(5000)]})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=700)
    reads.put("big.parquet", sink.getvalue())
    split, whole = reads.both_ways("big.parquet")
    assert split == whole == [{"id": i, "name": f"n{i}"} for i in range(5000)]


def test_bad_data_in_a_late_range_fails_the_run_like_one_stream_and_keeps_the_table(
    reads: Reads, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reads.monkeypatch.setattr(formats, "INFER_BLOCK_SIZE", 1000)  # types from the first rows only
    db = tmp_path / "t.duckdb"
    reads.put("first.csv", csv_body(5))
    assert load(reads.s3, reads.bucket, "first.csv", db)[0] == 0
    body = csv_body(400).replace(b"\n350,", b"\noops,")
    reads.put("big.csv", body)
    code, _ = load(reads.s3, reads.bucket, "big.csv", db)
    out = capsys.readouterr()
    assert code != 0
    # As for one stream: the line and the row as read (row 351 holds id 350; the header is line 1).
    assert "big.csv: line 352, row 351, column 'id'" in out.err, out.err
    assert "invalid value 'oops'" in out.err, out.err
    assert len(reads.ranges) > 20
    assert [r[0] for r in rows(db)] == [0, 1, 2, 3, 4]


def test_a_store_failure_mid_object_fails_the_run_and_keeps_the_table(
    reads: Reads, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "t.duckdb"
    reads.put("first.csv", csv_body(5))
    assert load(reads.s3, reads.bucket, "first.csv", db)[0] == 0
    reads.put("big.csv", csv_body(400))
    # Ranges are read after the schema pass; the first GET the server sees after its
    # first (the schema's) fails for good.
    reads.s3.faults.add(
        "fail", method="GET", path_regex=r"/big\.csv", status=403, code="AccessDenied", skip=1,
        times=None,
    )  # fmt: skip
    code, _ = load(reads.s3, reads.bucket, "big.csv", db)
    out = capsys.readouterr()
    assert code != 0 and "big.csv" in out.out + out.err
    assert [r[0] for r in rows(db)] == [0, 1, 2, 3, 4]


def test_rows_handed_out_before_a_range_turns_out_cut_in_a_value_are_not_repeated(
    reads: Reads,
) -> None:
    # Several batches per range (small blocks), so rows leave before the range's end is
    # checked; every record holds line breaks, so the first cut falls inside a value.
    reads.monkeypatch.setattr(byte_ranges, "RANGE_BYTES", 2000)
    reads.monkeypatch.setattr(formats, "READ_BLOCK_SIZE", 256)
    skipped: list[int] = []
    real = S3Source._file_batches

    def spy(self: S3Source, fs: Any, plan: Any, piece: Any, *rest: Any) -> Any:
        skipped.append(piece.skip_rows)
        return real(self, fs, plan, piece, *rest)

    reads.monkeypatch.setattr(S3Source, "_file_batches", spy)
    body = "id,text\n" + "".join(f'{i},"line\nbreak {i}"\n' for i in range(600))
    reads.put("breaks.csv", body.encode())
    split, whole = reads.both_ways("breaks.csv")
    assert split == whole == [{"id": i, "text": f"line\nbreak {i}"} for i in range(600)]
    assert skipped[0] > 0  # the resumed stream passed over rows the range handed out


def jsonl_rows(n: int) -> bytes:
    return "".join(
        json.dumps({"id": i, "at": f"2024-01-{1 + i % 28:02d}T10:00:00Z", "name": f"n{i} ü"}) + "\n"
        for i in range(n)
    ).encode()


def test_a_jsonl_file_s_first_block_is_parsed_once_and_its_rows_come_first(
    s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(formats, "INFER_BLOCK_SIZE", 2000)  # the first ~30 of 300 rows
    put(s3_server, bucket, "a.jsonl", jsonl_rows(300))
    put(s3_server, bucket, "b.jsonl", jsonl_rows(10))  # within the first block: kept whole
    heads: list[int | None] = []
    real = formats.JsonLinesReader.schema_and_head

    def spy(reader: formats.JsonLinesReader, stream: pa.NativeFile) -> Any:
        own, head = real(reader, stream)
        heads.append(head.end if head is not None else -1)
        return own, head

    monkeypatch.setattr(formats.JsonLinesReader, "schema_and_head", spy)
    kept = source_rows(s3_server, bucket, "*.jsonl")
    assert None in heads  # b.jsonl, all its rows
    assert any(end is not None and 0 < end <= 2000 for end in heads)  # a.jsonl, its first rows
    monkeypatch.setattr(formats.JsonLinesReader, "_head", lambda *_: None)
    assert kept == source_rows(s3_server, bucket, "*.jsonl")
    assert [r["id"] for r in kept] == list(range(300)) + list(range(10))


def test_bad_data_after_a_kept_first_block_names_its_line_as_one_stream_does(
    s3_server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(formats, "INFER_BLOCK_SIZE", 2000)
    body = jsonl_rows(300).replace(b'{"id": 250,', b'{"id": "oops",')
    put(s3_server, bucket, "bad.jsonl", body)
    db = tmp_path / "t.duckdb"
    messages = []
    for keep in (True, False):
        if not keep:
            monkeypatch.setattr(formats.JsonLinesReader, "_head", lambda *_: None)
        code, _ = load(s3_server, bucket, "bad.jsonl", db)
        assert code != 0
        messages.append(capsys.readouterr().err)
    assert messages[0] == messages[1]
    assert "bad.jsonl: line 251, row 251" in messages[0], messages[0]
    assert not db.exists() or not rows_exist(db)


def rows_exist(db: Path) -> bool:
    with duckdb.connect(str(db), read_only=True) as con:
        return bool(
            con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 't'"
            ).fetchone()[0]
        )
