"""Writing one data file of an S3 destination: Parquet, CSV or JSON Lines from Arrow batches
into an :class:`~kingest.runner.s3_upload.ObjectSink`, and the stream helpers the writers need.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Literal, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from kingest.runner.errors import DataError
from kingest.runner.s3_upload import ObjectSink

FileFormat = Literal["parquet", "csv", "jsonl"]
FILE_FORMATS: tuple[FileFormat, ...] = ("parquet", "csv", "jsonl")
CONTENT_TYPES: dict[FileFormat, str] = {
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
}

# Row groups of DuckDB's own size: big enough for column statistics and scans to pay off,
# small enough that a reader (or this writer) never holds a whole file in memory.
ROW_GROUP_ROWS = 122_880
ROW_GROUP_BYTES = 64 * 1024 * 1024
_DICTIONARY_SAMPLE_ROWS = 8192
_WRITE_BUFFER = 1024 * 1024


class FileWriter(Protocol):
    """One data file being written: batches in, then finished (the sink is committed apart)."""

    def write(self, batch: pa.RecordBatch) -> None: ...
    def finish(self) -> None: ...


class ParquetFile:
    """Parquet with row groups of ``row_group_rows``, however the source sized its batches."""

    def __init__(self, sink: ObjectSink, schema: pa.Schema, row_group_rows: int) -> None:
        # pyarrow's writer hands its sink every page and page header apart (~900 writes for a
        # 34 MB file), each a call into Python that waits for the GIL while other threads
        # (the S3 client being made) hold it; buffered here, one write per MiB.
        self._stream = pa.BufferedOutputStream(pa.PythonFile(sink, mode="w"), _WRITE_BUFFER)
        self._schema = schema
        self._writer: pq.ParquetWriter | None = None
        self._row_group_rows = row_group_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        if self._pending_rows >= self._row_group_rows or self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = pa.Table.from_batches(self._pending, schema=self._schema)
            if self._writer is None:
                self._writer = pq.ParquetWriter(
                    self._stream,
                    self._schema,
                    compression="snappy",
                    use_dictionary=dictionary_columns(table),
                )
            self._writer.write_table(table, row_group_size=self._row_group_rows)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def finish(self) -> None:
        self._flush()
        if self._writer is None:
            # No rows at all: still a valid file carrying the schema.
            self._writer = pq.ParquetWriter(self._stream, self._schema, compression="snappy")
        self._writer.close()
        self._stream.close()


def dictionary_columns(first_row_group: pa.Table) -> list[str]:
    """Columns worth dictionary encoding, judged on a sample of the first row group.

    pyarrow tries a dictionary for every column and falls back to plain encoding once the
    dictionary outgrows its page; on near-unique columns (ids, e-mails, random numbers) that
    attempt costs about half the encoding time and makes the file larger. Columns with few
    distinct values (countries, states, flags) keep it.
    """
    sample = first_row_group.slice(0, _DICTIONARY_SAMPLE_ROWS)
    chosen = []
    for name, column in zip(sample.column_names, sample.columns, strict=True):
        kind = column.type
        if pa.types.is_dictionary(kind):
            chosen.append(name)  # already dictionary-encoded at the source (enums)
            continue
        if pa.types.is_nested(kind) or pa.types.is_floating(kind) or not len(column):
            continue
        try:
            distinct = pc.count_distinct(column, mode="all").as_py()
        except pa.ArrowNotImplementedError:
            continue  # a type without a hash kernel: leave pyarrow's default (plain)
        if distinct <= max(1, len(column) // 10):
            chosen.append(name)
    return chosen


class CsvFile:
    def __init__(self, sink: ObjectSink, schema: pa.Schema) -> None:
        nested = [f.name for f in schema if pa.types.is_nested(f.type)]
        if nested:
            raise DataError(
                f"column(s) {', '.join(nested)} hold nested values, which CSV cannot represent;"
                " use --loader-file-format parquet or jsonl"
            )
        self._writer = pa_csv.CSVWriter(sink, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def finish(self) -> None:
        self._writer.close()


class JsonlFile:
    """One JSON object per line, rendered by DuckDB's ``to_json`` (native, typed)."""

    def __init__(self, sink: ObjectSink, schema: pa.Schema) -> None:
        self._sink = sink
        self._db = duckdb.connect()
        # An explicit struct of the columns: a bare table alias would be shadowed by a
        # column of the same name.
        fields = ", ".join(f"{sql_name(f.name)} := {sql_name(f.name)}" for f in schema)
        self._sql = f"SELECT to_json(struct_pack({fields}))::VARCHAR || chr(10) FROM batch_view"

    def write(self, batch: pa.RecordBatch) -> None:
        self._db.register("batch_view", pa.Table.from_batches([batch]))
        column = self._db.sql(self._sql).to_arrow_table().column(0)
        self._db.unregister("batch_view")
        for chunk in column.chunks:
            if chunk.type != pa.large_string():
                chunk = chunk.cast(pa.large_string())
            # The values buffer of a string array holds its strings back to back, so the
            # lines go out as one slice of it, never as Python strings.
            _validity, offsets, values = chunk.buffers()
            start = struct.unpack_from("<q", offsets, 8 * chunk.offset)[0]
            end = struct.unpack_from("<q", offsets, 8 * (chunk.offset + len(chunk)))[0]
            self._sink.write(memoryview(values)[start:end])

    def finish(self) -> None:
        self._db.close()


def open_file_writer(
    file_format: FileFormat, sink: ObjectSink, schema: pa.Schema, row_group_rows: int
) -> FileWriter:
    """A writer of ``file_format`` into ``sink``."""
    if file_format == "parquet":
        return ParquetFile(sink, schema, row_group_rows)
    if file_format == "csv":
        return CsvFile(sink, schema)
    return JsonlFile(sink, schema)


def sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def intervals_as_text(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """The stream with interval columns rendered as text (``3 days 04:00:00``) by DuckDB.

    Neither Parquet nor pyarrow's CSV writer can store Arrow's month-day-nano intervals
    (DuckDB ``INTERVAL``); text keeps every value readable. Other streams pass unchanged.
    """
    names = [f.name for f in reader.schema if pa.types.is_interval(f.type)]
    if not names:
        return reader
    schema = pa.schema(
        [pa.field(f.name, pa.string(), f.nullable) if f.name in names else f for f in reader.schema]
    )
    casts = ", ".join(f"CAST({sql_name(n)} AS VARCHAR) AS {sql_name(n)}" for n in names)

    def converted() -> Iterator[pa.RecordBatch]:
        with duckdb.connect() as db:
            for batch in record_batches(reader):
                db.register("batch_view", pa.Table.from_batches([batch]))
                table = db.sql(f"SELECT * REPLACE ({casts}) FROM batch_view").to_arrow_table()
                db.unregister("batch_view")
                yield from table.cast(schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, converted())


def record_batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """The reader's non-empty batches; source read errors surface as DataError."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowException as exc:
            raise DataError(f"reading the source failed: {exc}") from None
        if batch.num_rows:
            yield batch
