"""Where in a source file a data error is: file, line, row as read, column.

pyarrow's readers parse files in blocks of a megabyte and more, and their errors say what is
wrong but not where ("Expected 2 columns, got 3: 1,2,3"). On that error path only, the file
is read again, record by record, to find the line and row the error is about: a run that
fails can afford it, and a user told "line 1,000" need not search.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from typing import TextIO, TypeVar

import pyarrow as pa

from kingest.runner.formats import LossyValue

TextOpener = Callable[[], TextIO]
T = TypeVar("T")

_CSV_COLUMN = re.compile(
    r"In CSV column #(\d+): CSV conversion error to (\S+): invalid value '(.*)'"
)
_CSV_WIDTH = re.compile(r"CSV parse error: Expected (\d+) columns, got (\d+): (.*)", re.DOTALL)
_JSON_ROW = re.compile(r" in row (\d+)")


def text_opener(open_stream: Callable[[], pa.NativeFile], encoding: str | None) -> TextOpener:
    """A function opening a file's bytes (``open_stream``) as text, as the readers decode it:
    ``encoding`` (UTF-8 by default; a UTF-8 byte order mark skipped), newlines kept as read."""

    def open_text() -> TextIO:
        stream = open_stream()
        if encoding and encoding.replace("-", "").lower() not in ("utf8", "utf8sig"):
            stream = pa.transcoding_input_stream(stream, encoding, "utf8")
        return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")

    return open_text


def _csv_records(text: TextIO) -> Iterator[tuple[int, list[str]]]:
    """Each non-empty CSV record (header included) with the line it starts on, 1-based."""
    reader = csv.reader(text, strict=False)
    start = 1
    for record in reader:
        if record:
            yield start, record
        start = reader.line_num + 1


def _data_records(opener: TextOpener, headless: bool) -> Iterator[tuple[int, int, list[str]]]:
    """(line, data row, fields) of each CSV data row; data rows count from 1."""
    with opener() as text:
        records = _csv_records(text)
        if not headless:
            next(records, None)
        for row, (line, fields) in enumerate(records, start=1):
            yield line, row, fields


def _jsonl_record(opener: TextOpener, row: int) -> tuple[int, str] | None:
    """The line of the ``row``-th JSON Lines record (blank lines hold none), and its text."""
    with opener() as text:
        seen = 0
        for line, content in enumerate(text, start=1):
            if content.strip():
                seen += 1
                if seen == row:
                    return line, content.rstrip("\r\n")
    return None


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def _first(found: Callable[[], T | None]) -> T | None:
    """``found()``, or None if reading the file again fails: the message then goes without
    the line, rather than the run failing on its way to saying what failed."""
    try:
        return found()
    except (OSError, UnicodeDecodeError, csv.Error, pa.ArrowException):
        return None


def _position(line: int | None, row: int) -> str:
    return f"line {line:,}, row {row:,}" if line is not None else f"row {row:,}"


def describe_data_error(
    exc: Exception,
    url: str,
    names: list[str],
    rows_before: int,
    *,
    file_format: str,
    opener: TextOpener | None,
) -> str:
    """A message for a data error while reading ``url``, naming the line (for text files),
    the data row (counted from 1, the header excluded), the column, and the row as read.

    ``rows_before`` is how many rows of the file were read before the failing batch;
    ``names`` the file's column names; ``opener`` reopens the file as text (None: Parquet).
    """
    text = str(exc)
    csv_file = file_format in ("csv", "csv_headless") and opener is not None
    headless = file_format == "csv_headless"
    if isinstance(exc, LossyValue):
        row = rows_before + exc.row
        line = None
        if csv_file:
            records = _data_records(opener, headless)
            line = _first(lambda: next((ln for ln, r, _ in records if r == row), None))
        elif file_format == "jsonl" and opener is not None:
            found = _first(lambda: _jsonl_record(opener, row))
            line = found[0] if found else None
        return f"{url}: {_position(line, row)}, column {exc.column!r}: {exc.detail}; {exc.remedy}"
    column = _CSV_COLUMN.search(text)
    if column and csv_file:
        index, to, value = int(column.group(1)), column.group(2), column.group(3)
        name = names[index] if index < len(names) else f"#{index + 1}"
        records = _data_records(opener, headless)
        found = _first(
            lambda: next(
                ((ln, r) for ln, r, f in records if r > rows_before and f[index:][:1] == [value]),
                None,
            )
        )
        where = f"{_position(*found)}, " if found else f"after data row {rows_before:,}, "
        return (
            f"{url}: {where}column {name!r}: cannot convert to {to}: invalid value {value!r}; "
            f"pass --columns {name}:text to load it as text"
        )
    width = _CSV_WIDTH.search(text)
    if width and csv_file:
        expected, got, as_read = int(width.group(1)), width.group(2), width.group(3)
        records = _data_records(opener, headless)
        found = _first(lambda: next(((ln, r) for ln, r, f in records if len(f) != expected), None))
        where = _position(*found) if found else f"after data row {rows_before:,}"
        return f"{url}: {where}: expected {expected} columns, got {got}: {as_read}"
    in_row = _JSON_ROW.search(text)
    if in_row:
        row = rows_before + int(in_row.group(1)) + 1
        record = _first(lambda: _jsonl_record(opener, row)) if opener is not None else None
        if record is None:
            return f"{url}: row {row:,}: {text[: in_row.start()]}"
        detail = text[: in_row.start()].rstrip(".")
        return f"{url}: {_position(record[0], row)}: {detail}: {_clip(record[1])}"
    return f"{url}, after data row {rows_before:,}: {text}"
