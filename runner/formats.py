"""File formats: which reader a file needs, its schema, and its rows as Arrow batches.

Everything here streams: CSV and JSONL through pyarrow's block-wise readers (types inferred
from a file's first block), Parquet one row group at a time. Python only configures the
native readers and casts batches to the run's unified schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.fs as pafs
import pyarrow.json as pa_json

from kingest.runner.errors import DataError, UsageError
from kingest.runner.glob import Hints
from kingest.runner.interfaces import ColumnHint

if TYPE_CHECKING:
    from pyarrow.dataset import ParquetFileFragment

# Bytes of a CSV/JSON file its types are inferred from (its first block): more infers better.
INFER_BLOCK_SIZE = 4 * 1024 * 1024
# Bytes per block while streaming rows, whose types are known by then. pyarrow's streaming
# readers fetch about 32 blocks ahead as soon as they are opened, so this bounds the memory
# of each file in flight (~32 MiB); smaller blocks parse no slower.
READ_BLOCK_SIZE = 1024 * 1024
# Rows per Parquet batch: about what a 1 MiB CSV block holds; smaller batches keep less in
# flight per file (DuckDB works on 2,048-row vectors whatever the batch size).
PARQUET_BATCH_ROWS = 8 * 1024
# Batches a Parquet file decodes ahead of its consumer (pyarrow's default is 16).
_PARQUET_READAHEAD = 4

_COMPRESSION = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": None,
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Patterns over JSON text values (RE2 syntax, run by pyarrow.compute).
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_ZONED = r"(?:Z|[+-]\d{2}:?\d{2})$"


@dataclass(frozen=True, slots=True)
class FileKind:
    """How one object is read: ``format`` (csv | csv_headless | jsonl | parquet), compression."""

    format: str
    compression: str | None

    @property
    def family(self) -> str:
        """The format without its variant (``csv_headless`` is ``csv``), for mixing checks."""
        return "csv" if self.format == "csv_headless" else self.format


def detect_kind(key: str, hints: Hints) -> FileKind | None:
    """The kind of object ``key`` (the format hint wins over the extension); None if unknown."""
    name = key.rsplit("/", 1)[-1].lower()
    compression = None
    for suffix, codec in _COMPRESSION.items():
        if name.endswith(suffix):
            compression, name = codec, name[: -len(suffix)]
            break
    if hints.format is not None:
        return FileKind(hints.format, compression)
    for suffix, fmt in _EXTENSIONS.items():
        if name.endswith(suffix) and fmt is not None:
            return FileKind(fmt, compression)
    return None


def normalize_type(data_type: pa.DataType) -> pa.DataType:
    """The type a column is loaded as: timestamps in microseconds (DuckDB's TIMESTAMP)."""
    if pa.types.is_timestamp(data_type) and data_type.unit != "us":
        return pa.timestamp("us", tz=data_type.tz)
    if pa.types.is_dictionary(data_type):
        return normalize_type(data_type.value_type)
    if pa.types.is_large_string(data_type) or pa.types.is_string_view(data_type):
        return pa.string()
    return data_type


def _rank(data_type: pa.DataType) -> int | None:
    if pa.types.is_null(data_type):
        return 0
    if pa.types.is_boolean(data_type):
        return 1
    if pa.types.is_integer(data_type):
        return 2
    if pa.types.is_floating(data_type) or pa.types.is_decimal(data_type):
        return 3
    return None


def unify_types(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The type holding both ``a`` and ``b`` (int+float -> double, date+timestamp ->
    timestamp, scalar+text -> text); None when nothing sensible holds both (e.g. struct+int).
    """
    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    ra, rb = _rank(a), _rank(b)
    if ra is not None and rb is not None and ra >= 2 and rb >= 2:
        return pa.int64() if ra == rb == 2 else pa.float64()
    temporal = (pa.types.is_timestamp, pa.types.is_date)
    if any(t(a) for t in temporal) and any(t(b) for t in temporal):
        zones = {t.tz for t in (a, b) if pa.types.is_timestamp(t) and t.tz}
        return pa.timestamp("us", tz="UTC" if zones else None)
    nested = (pa.types.is_struct, pa.types.is_list, pa.types.is_large_list, pa.types.is_map)
    if any(t(a) or t(b) for t in nested):
        return None
    return pa.string()


def unify_schemas(schemas: list[tuple[str, pa.Schema]]) -> pa.Schema:
    """One schema for all files: columns in first-seen order, types widened across files.

    Raises :class:`DataError` naming the column and two files whose types cannot be unified.
    """
    fields: dict[str, pa.DataType] = {}
    seen_in: dict[str, str] = {}
    unified: set[int] = set()
    for name, schema in schemas:
        # Files of one layout share one schema object (the S3 source interns them); merging
        # it again could change nothing.
        if id(schema) in unified:
            continue
        unified.add(id(schema))
        for field in schema:
            current = fields.get(field.name)
            if current is None:
                fields[field.name] = normalize_type(field.type)
                seen_in[field.name] = name
                continue
            merged = unify_types(current, normalize_type(field.type))
            if merged is None:
                raise DataError(
                    f"column {field.name!r} is {current} in {seen_in[field.name]} but "
                    f"{field.type} in {name}; pass --columns {field.name}:<type> to choose"
                )
            fields[field.name] = merged
    return pa.schema(list(fields.items()))


def conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly ``target``'s columns and types (missing columns are null)."""
    if batch.schema.equals(target):
        return batch
    columns = []
    for field in target:
        index = batch.schema.get_field_index(field.name)
        if index == -1:
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(index)
        if not column.type.equals(field.type):
            # Timestamps lose sub-microsecond digits on purpose (DuckDB stores microseconds).
            lossy = pa.types.is_timestamp(field.type) and pa.types.is_timestamp(column.type)
            column = column.cast(field.type, safe=not lossy)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=target)


def first_block(stream: pa.NativeFile, encoding: str | None) -> pa.BufferReader:
    """The start of a text file, transcoded to UTF-8: enough for a reader opened on it with
    ``block_size=INFER_BLOCK_SIZE`` to parse the same first block as on the whole file (one
    byte more tells it that block is not the last), without fetching the rest.

    Opened on the whole object, pyarrow's streaming readers would download ~32 blocks in the
    background just to report a schema.
    """
    # A no-op for UTF-8 itself; what pyarrow's CSV reader does with ReadOptions.encoding.
    stream = pa.transcoding_input_stream(stream, encoding or "utf8", "utf8")
    wanted = INFER_BLOCK_SIZE + 1
    parts: list[bytes] = []
    while wanted > 0 and (part := stream.read(wanted)):
        parts.append(part)
        wanted -= len(part)
    return pa.BufferReader(b"".join(parts))


class CsvReader:
    """CSV with a header (or headless): UTF-8 with or without BOM, quoted fields spanning
    lines, any encoding by ``#encoding=``; ``--columns`` types (and names, when headless)."""

    def __init__(self, hints: Hints, columns: tuple[ColumnHint, ...], headless: bool) -> None:
        self.headless = headless
        self.encoding = hints.encoding or "utf8"
        self.columns = columns
        self.parse_options = pa_csv.ParseOptions(newlines_in_values=True)

    def _open(
        self,
        stream: pa.NativeFile,
        names: list[str] | None,
        types: dict[str, pa.DataType],
        block_size: int,
        encoding: str,
    ) -> pa_csv.CSVStreamingReader:
        return pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(
                block_size=block_size,
                encoding=encoding,
                column_names=names,
                autogenerate_column_names=self.headless and names is None,
            ),
            parse_options=self.parse_options,
            convert_options=pa_csv.ConvertOptions(column_types=types),
        )

    def _hinted_names(self) -> list[str] | None:
        return [c.name for c in self.columns] if self.headless and self.columns else None

    def schema(self, stream: pa.NativeFile) -> pa.Schema:
        """The file's columns and types, from its first block."""
        hint_types = {c.name: c.arrow_type for c in self.columns}
        sample = first_block(stream, self.encoding)
        reader = self._open(sample, self._hinted_names(), hint_types, INFER_BLOCK_SIZE, "utf8")
        schema = reader.schema
        reader.close()
        if self.headless and not self.columns:
            schema = pa.schema([pa.field(f"unknown_col_{i}", f.type) for i, f in enumerate(schema)])
        return pa.schema([pa.field(f.name, normalize_type(f.type)) for f in schema])

    def batches(
        self, stream: pa.NativeFile, own: pa.Schema, target: pa.Schema, after_header: bool = False
    ) -> Iterator[pa.RecordBatch]:
        """The file's rows, parsed straight into ``target``'s types; ``after_header``: the
        stream starts at a record after the header (a range of the file)."""
        names = own.names if self.headless or after_header else None
        types = {f.name: target.field(f.name).type for f in own}
        yield from self._open(stream, names, types, READ_BLOCK_SIZE, self.encoding)


class JsonLinesReader:
    """JSON Lines (one object per line; blank lines skipped). Nested objects and arrays stay
    nested (STRUCT / LIST); ISO dates and timestamps become DATE / TIMESTAMP."""

    def __init__(self, hints: Hints, columns: tuple[ColumnHint, ...]) -> None:
        self.encoding = hints.encoding
        # JSON-typed columns keep their nested type here; the destination serializes them.
        self.columns = columns

    @staticmethod
    def _open(
        stream: pa.NativeFile, explicit: pa.Schema | None, block_size: int, only_explicit: bool
    ) -> pa_json.JSONStreamingReader:
        return pa_json.open_json(
            stream,
            read_options=pa_json.ReadOptions(block_size=block_size),
            parse_options=pa_json.ParseOptions(
                explicit_schema=explicit,
                unexpected_field_behavior="ignore" if only_explicit else "infer",
            ),
        )

    def schema(self, stream: pa.NativeFile) -> pa.Schema:
        """The file's fields and types, from its first block; string-encoded temporals are
        told apart (date, timestamp with or without zone) from the values themselves."""
        sample = first_block(stream, self.encoding)
        typed = [(c.name, c.arrow_type) for c in self.columns if not c.is_json]
        reader = self._open(sample, pa.schema(typed) if typed else None, INFER_BLOCK_SIZE, False)
        schema = reader.schema
        reader.close()
        temporal = [f.name for f in schema if pa.types.is_timestamp(f.type)]
        temporal = [n for n in temporal if not any(c.name == n for c in self.columns)]
        fields = {f.name: normalize_type(f.type) for f in schema}
        if temporal:
            sample.seek(0)
            as_text = pa.schema([(n, pa.string()) for n in temporal])
            reader = self._open(sample, as_text, INFER_BLOCK_SIZE, True)
            first = reader.read_next_batch()
            reader.close()
            for name in temporal:
                fields[name] = _temporal_type(first.column(name))
        return pa.schema(list(fields.items()))

    def _explicit(self, own: pa.Schema) -> pa.Schema:
        """The types ``own``'s fields are parsed as while streaming: the first block's (so a
        smaller streaming block does not infer anew), temporal fields as text (cast to the
        target's type later), ``--columns`` types; all-null fields are still inferred."""
        hints = {c.name: c for c in self.columns}
        explicit: dict[str, pa.DataType] = {}
        for field in own:
            hint = hints.get(field.name)
            if hint is not None:
                if not hint.is_json:
                    explicit[field.name] = hint.arrow_type
            elif pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
                explicit[field.name] = pa.string()
            elif not pa.types.is_null(field.type):
                explicit[field.name] = field.type
        for hint in self.columns:
            if not hint.is_json:
                explicit.setdefault(hint.name, hint.arrow_type)
        return pa.schema(list(explicit.items()))

    def batches(
        self, stream: pa.NativeFile, own: pa.Schema, target: pa.Schema
    ) -> Iterator[pa.RecordBatch]:
        """The file's rows; temporal fields are parsed from text into ``target``'s types."""
        source = pa.transcoding_input_stream(stream, self.encoding or "utf8", "utf8")
        explicit = self._explicit(own)
        yield from self._open(source, explicit if len(explicit) else None, READ_BLOCK_SIZE, False)


def _temporal_type(texts: pa.Array) -> pa.DataType:
    """DATE if every (non-empty) value is a plain date, else TIMESTAMP, with time zone if
    any value carries an offset."""
    values = pc.filter(texts, pc.not_equal(texts, ""))
    if len(values) and pc.all(pc.match_substring_regex(values, _DATE)).as_py():
        return pa.date32()
    if pc.any(pc.match_substring_regex(values, _ZONED)).as_py():
        return pa.timestamp("us", tz="UTC")
    return pa.timestamp("us")


class ParquetReader:
    """Parquet, one row group at a time (memory bounded by the row group, not the file)."""

    def __init__(self, batch_rows: int | None) -> None:
        self.batch_rows = batch_rows or PARQUET_BATCH_ROWS

    @staticmethod
    def fragment(path: str, filesystem: pafs.FileSystem, size: int | None) -> ParquetFileFragment:
        """The file at ``path`` as a dataset fragment: of known ``size``, it is opened without
        asking the store for its size first (opening by name makes a HEAD request)."""
        import pyarrow.dataset as ds  # only runs that read Parquet pay for importing it

        options = ds.ParquetFragmentScanOptions(pre_buffer=True)
        parquet = ds.ParquetFileFormat(default_fragment_scan_options=options)
        return parquet.make_fragment(path, filesystem, file_size=size)

    def schema(self, fragment: ParquetFileFragment) -> pa.Schema:
        """The file's schema, from its footer."""
        schema = fragment.physical_schema
        return pa.schema([pa.field(f.name, normalize_type(f.type)) for f in schema])

    def batches(self, fragment: ParquetFileFragment) -> Iterator[pa.RecordBatch]:
        """The file's rows in batches of ``batch_rows``."""
        yield from fragment.to_batches(
            batch_size=self.batch_rows, batch_readahead=_PARQUET_READAHEAD, use_threads=True
        )


def check_hint_columns(
    kind: FileKind, columns: tuple[ColumnHint, ...], schema: pa.Schema, name: str
) -> None:
    """A headless CSV must have as many columns as ``--columns`` names."""
    if kind.format == "csv_headless" and columns and len(schema) != len(columns):
        raise UsageError(f"{name} has {len(schema)} columns but --columns names {len(columns)}")
