"""`runner/positions.py`: a data error's line and row, found by reading the file again."""

from __future__ import annotations

import pyarrow as pa

from kingest.runner.formats import LossyValue
from kingest.runner.positions import TextOpener, describe_data_error, text_opener


def opener(body: bytes, encoding: str | None = None) -> TextOpener:
    return text_opener(lambda: pa.input_stream(pa.py_buffer(body)), encoding)


def test_a_row_of_the_wrong_width_is_found_past_quoted_newlines_and_blank_lines() -> None:
    body = b'\xef\xbb\xbfid,v\n1,"a\nb"\n\n2,c\n3,d,e\n'
    error = pa.ArrowInvalid("CSV parse error: Expected 2 columns, got 3: 3,d,e")
    message = describe_data_error(
        error, "s3://b/f.csv", ["id", "v"], 0, file_format="csv", opener=opener(body)
    )
    assert message == "s3://b/f.csv: line 6, row 3: expected 2 columns, got 3: 3,d,e"


def test_an_unconvertible_value_is_found_by_its_column_in_a_headless_latin1_file() -> None:
    body = "1,Köln\nzwei,Bonn\n".encode("latin-1")
    error = pa.ArrowInvalid("In CSV column #0: CSV conversion error to int64: invalid value 'zwei'")
    message = describe_data_error(
        error, "s3://b/f.csv", ["id", "city"], 0, file_format="csv_headless",
        opener=opener(body, "latin-1"),
    )  # fmt: skip
    assert message.startswith("s3://b/f.csv: line 2, row 2, column 'id': cannot convert to int64")


def test_a_lossy_value_in_json_lines_counts_rows_from_the_batch_and_skips_blank_lines() -> None:
    body = b'{"v": 1}\n\n{"v": 2}\n{"v": 3}\n'
    error = LossyValue("v", 1, "3", "3 changes", "pass --columns v:text")
    message = describe_data_error(
        error, "s3://b/f.jsonl", ["v"], 2, file_format="jsonl", opener=opener(body)
    )
    assert message == "s3://b/f.jsonl: line 4, row 3, column 'v': 3 changes; pass --columns v:text"


def test_parquet_rows_are_counted_without_reading_the_file() -> None:
    error = LossyValue("t", 5, "x", "x changes", "pass --columns t:text")
    message = describe_data_error(
        error, "s3://b/f.parquet", ["t"], 8192, file_format="parquet", opener=None
    )
    assert message == "s3://b/f.parquet: row 8,197, column 't': x changes; pass --columns t:text"


def test_a_file_that_cannot_be_read_again_is_reported_without_its_line() -> None:
    body = b"id,v\n1,a\n2,\xff\n"
    error = LossyValue("v", 1, "a", "a changes", "pass --columns v:text")
    message = describe_data_error(
        error, "s3://b/f.csv", ["id", "v"], 0, file_format="csv", opener=opener(body)
    )
    assert message == "s3://b/f.csv: row 1, column 'v': a changes; pass --columns v:text"
