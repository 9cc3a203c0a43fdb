"""File formats: which reader a file needs, its schema, and its rows as Arrow batches.

Everything here streams: CSV and JSONL through pyarrow's block-wise readers (types inferred
from a file's first block), Parquet one row group at a time (a large one a batch at a time).
Python only configures the native readers and casts batches to the run's unified schema.
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
    import pyarrow.parquet as pq
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
# Row groups this large (uncompressed) are decoded batch by batch, not whole: see
# ParquetReader.batches.
STREAMED_ROW_GROUP_BYTES = 32 * 1024 * 1024

_COMPRESSION = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": None,
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Patterns over text values (RE2 syntax, run by pyarrow.compute).
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_ZONED = r"(?:Z|[+-]\d{2}:?\d{2})$"
_INTEGER = r"^[+-]?\d+$"
_LEADING_ZERO = r"^[+-]?0\d"
# Over a CSV file's first block as bytes: a field that may start with a leading zero, or a
# number whose whole part may not fit 64 bits or a double (16 digits or more, not after a
# decimal point: a double's fraction often has 16 digits and is no reason to look).
# Without one, its numbers need no second look (a second parse of the block as text).
_MAYBE_INEXACT = r'(?m)(?:^|[,;\t|"])[+-]?0[0-9]|(?:^|[^0-9.])[0-9]{16}'
# Integers a double holds exactly: |v| <= 2**53 (pyarrow's safe int -> double cast's bound).
_EXACT_IN_DOUBLE = 2**53
# DuckDB's widest DECIMAL; Arrow's decimal128 holds as many digits.
_MAX_DECIMAL_DIGITS = 38
# Decimal digits of each integer type, for widening integers and decimals into one DECIMAL.
_INTEGER_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19}


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


class LossyValue(pa.ArrowInvalid):
    """A value the run's type for its column would change: which column, which row (1-based,
    counted from the first row of the batch or sample it was found in), the value as text.

    An ``ArrowInvalid``, so sources report it as they report pyarrow's own conversion errors,
    with the file and the position of the batch added.
    """

    def __init__(self, column: str, row: int, value: str, detail: str, remedy: str) -> None:
        super().__init__(f"column {column!r}, row {row}: {detail}")
        self.column = column
        self.row = row
        self.value = value
        self.detail = detail
        self.remedy = remedy


def distinct_names(names: list[str]) -> list[str]:
    """``names`` with repeats renamed ``name_1``, ``name_2``, ... (the first keeps its name;
    no new name collides with any other), as ingestr (dlt) names duplicate CSV headers."""
    taken = set(names)
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            suffix = 1
            while f"{name}_{suffix}" in taken:
                suffix += 1
            name = f"{name}_{suffix}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


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
    """The type holding both ``a`` and ``b`` (int+decimal -> decimal, int+float -> double,
    date+timestamp -> timestamp, scalar+text -> text); None when nothing sensible holds both
    (e.g. struct+int, decimals needing more than 38 digits).
    """
    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    ra, rb = _rank(a), _rank(b)
    if ra is not None and rb is not None and ra >= 2 and rb >= 2:
        return _unify_numbers(a, b)
    temporal = (pa.types.is_timestamp, pa.types.is_date)
    if any(t(a) for t in temporal) and any(t(b) for t in temporal):
        zones = {t.tz for t in (a, b) if pa.types.is_timestamp(t) and t.tz}
        return pa.timestamp("us", tz="UTC" if zones else None)
    nested = (pa.types.is_struct, pa.types.is_list, pa.types.is_large_list, pa.types.is_map)
    if any(t(a) or t(b) for t in nested):
        return None
    return pa.string()


def _decimal_digits(data_type: pa.DataType) -> tuple[int, int] | None:
    """(precision, scale) of a decimal or integer type; None for floats."""
    if pa.types.is_decimal(data_type):
        return data_type.precision, data_type.scale
    if pa.types.is_integer(data_type):
        unsigned64 = pa.types.is_uint64(data_type)
        return (20 if unsigned64 else _INTEGER_DIGITS[data_type.bit_width]), 0
    return None


def _unify_numbers(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """Integers stay integers (BIGINT, or DECIMAL(20,0) for signed with unsigned 64-bit),
    decimals and integers become the DECIMAL holding both, anything with a float DOUBLE (an
    integer beyond 2**53 then fails the cast, naming its row, rather than being rounded)."""
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        if pa.types.is_uint64(a) or pa.types.is_uint64(b):
            unsigned = not (pa.types.is_signed_integer(a) or pa.types.is_signed_integer(b))
            return pa.uint64() if unsigned else pa.decimal128(20, 0)
        return pa.int64()
    digits_a, digits_b = _decimal_digits(a), _decimal_digits(b)
    if digits_a is None or digits_b is None:
        return pa.float64()
    scale = max(digits_a[1], digits_b[1])
    whole = max(digits_a[0] - digits_a[1], digits_b[0] - digits_b[1])
    if whole + scale > _MAX_DECIMAL_DIGITS:
        return None
    return pa.decimal128(whole + scale, scale)


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
            column = _cast_exactly(column, field.name, field.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=target)


def _as_text(value: pa.Array) -> str:
    """A one-value array's value as text, for a message (nanoseconds included)."""
    try:
        return str(value.cast(pa.string())[0])
    except pa.ArrowException:
        return value.to_string(indent=0, window=1).strip("[]\n ")


def _exact_cast(values: pa.Array, to: pa.DataType) -> pa.Array:
    """``values`` as ``to``; ``ArrowInvalid`` if any value would change."""
    cast = values.cast(to)  # safe: refuses truncated timestamps, integers a double rounds
    if pa.types.is_decimal(values.type) and pa.types.is_floating(to):
        # pyarrow casts decimals to doubles unchecked: each double must give its decimal back.
        back = cast.cast(values.type, safe=False)
        if pc.all(pc.equal(back, values)).as_py() is False:
            raise pa.ArrowInvalid("no double equals it")
    return cast


def _cast_exactly(column: pa.Array, name: str, to: pa.DataType) -> pa.Array:
    """``column`` as ``to``, every value unchanged (an integer beyond 2**53 as a double, a
    nanosecond as a microsecond timestamp, a decimal digit dropped would change it); else a
    :class:`LossyValue` naming the first value that would change."""
    try:
        return _exact_cast(column, to)
    except pa.ArrowInvalid as exc:
        detail = str(exc)
    # Only on failure: find the first row that does not convert, one value at a time.
    for row in range(len(column)):
        value = column.slice(row, 1)
        try:
            _exact_cast(value, to)
        except pa.ArrowInvalid:
            text = _as_text(value)
            raise LossyValue(
                name,
                row + 1,
                text,
                f"{text} cannot be held exactly as {to}: {detail}",
                f"pass --columns {name}:text to load it as text",
            ) from None
    raise LossyValue(name, 1, "", detail, f"pass --columns {name}:text to load it as text")


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
    lines, any encoding by ``#encoding=``; ``--columns`` types (and names, when headless).

    Values arrive as they were: only the empty field is NULL unless ``null_tokens`` names
    more (pyarrow's default list would turn ``n/a`` or ``NaN`` into NULL silently); repeated
    header names become ``name_1``, ...; a column with leading zeros (``007``) is text; whole
    numbers beyond 64 bits are DECIMAL(38,0) (text beyond 38 digits), never a rounded double.
    """

    def __init__(
        self,
        hints: Hints,
        columns: tuple[ColumnHint, ...],
        headless: bool,
        null_tokens: tuple[str, ...] = (),
    ) -> None:
        self.headless = headless
        self.encoding = hints.encoding or "utf8"
        self.columns = columns
        self.null_values = ["", *null_tokens]
        self.parse_options = pa_csv.ParseOptions(newlines_in_values=True)

    def _open(
        self,
        stream: pa.NativeFile,
        names: list[str] | None,
        types: dict[str, pa.DataType],
        block_size: int,
        encoding: str,
        include: list[str] | None = None,
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
            convert_options=pa_csv.ConvertOptions(
                column_types=types,
                null_values=self.null_values,
                strings_can_be_null=True,
                include_columns=include,
            ),
        )

    def _hinted_names(self) -> list[str] | None:
        return [c.name for c in self.columns] if self.headless and self.columns else None

    def schema(self, stream: pa.NativeFile) -> pa.Schema:
        """The file's columns and types, from its first block."""
        hint_types = {c.name: c.arrow_type for c in self.columns}
        # A stream of its own for each parse: a closed reader may still be reading ahead.
        sample = first_block(stream, self.encoding).read_buffer()
        names = self._hinted_names()
        reader = self._open(pa.BufferReader(sample), names, hint_types, INFER_BLOCK_SIZE, "utf8")
        schema = reader.schema
        reader.close()
        types = [normalize_type(f.type) for f in schema]
        # Columns pyarrow reads as numbers, told apart again from their text (once each).
        numeric = {
            f.name: i
            for i, f in enumerate(schema)
            if f.name not in hint_types
            and len(schema.get_all_field_indices(f.name)) == 1
            and (pa.types.is_int64(f.type) or pa.types.is_float64(f.type))
        }
        if numeric and _maybe_inexact(pa.BufferReader(sample)):
            as_text = dict.fromkeys(numeric, pa.string())
            reader = self._open(
                pa.BufferReader(sample), names, as_text, INFER_BLOCK_SIZE, "utf8", list(numeric)
            )
            texts = reader.read_next_batch()
            reader.close()
            for name, index in numeric.items():
                types[index] = _numeric_type(name, types[index], texts.column(name))
        if self.headless and not self.columns:
            names = [f"unknown_col_{i}" for i in range(len(schema))]
        else:
            names = distinct_names(schema.names)
        return pa.schema(list(zip(names, types, strict=True)))

    def batches(
        self, stream: pa.NativeFile, own: pa.Schema, target: pa.Schema, after_header: bool = False
    ) -> Iterator[pa.RecordBatch]:
        """The file's rows, parsed straight into ``target``'s types; ``after_header``: the
        stream starts at a record after the header (a range of the file)."""
        names = own.names if self.headless or after_header else None
        types = {f.name: _parsed_as(f.type, target.field(f.name).type) for f in own}
        # A repeated header name (``v`` for ``v`` and ``v_1``) is one key of pyarrow's type
        # map for both columns: of different types, they are read as text, renamed, then
        # cast one by one (the same casts pyarrow's CSV parsing does, for inferred types).
        for name in own.names:
            repeated, sep, suffix = name.rpartition("_")
            twin = types.get(repeated) if sep and suffix.isdigit() else None
            if twin is not None and not types[name].equals(twin):
                types[repeated] = pa.string()
        for batch in self._open(stream, names, types, READ_BLOCK_SIZE, self.encoding):
            yield batch if batch.schema.names == own.names else batch.rename_columns(own.names)


def _maybe_inexact(sample: pa.BufferReader) -> bool:
    """Whether a CSV sample holds anything that could make a numeric column inexact (a
    leading zero, 16 digits in a row): a cheap scan sparing most files a second parse."""
    sample.seek(0)
    data = pa.scalar(sample.read_buffer().to_pybytes(), pa.binary())
    return bool(pc.match_substring_regex(data, _MAYBE_INEXACT).as_py())


def _parsed_as(own: pa.DataType, target: pa.DataType) -> pa.DataType:
    """The type a CSV column is parsed as: the run's, except integers and decimals bound for
    a double, parsed as they are and cast (a cast refuses what a double would round; parsing
    does not)."""
    exact = pa.types.is_integer(own) or pa.types.is_decimal(own)
    return own if exact and pa.types.is_floating(target) else target


def _numeric_type(name: str, inferred: pa.DataType, texts: pa.Array) -> pa.DataType:
    """The type a CSV column pyarrow inferred as int64 or double is loaded as, from its text:
    text if any value has a leading zero, DECIMAL(38,0) for whole numbers beyond 64 bits (text
    beyond 38 digits). A whole number a double would round among fractions is an error."""
    values = texts.drop_null()
    if not len(values):
        return inferred
    if pc.any(pc.match_substring_regex(values, _LEADING_ZERO)).as_py():
        return pa.string()
    if pa.types.is_int64(inferred):
        return inferred
    if pc.all(pc.match_substring_regex(values, _INTEGER)).as_py():
        digits = pc.max(pc.utf8_length(pc.utf8_ltrim(values, characters="+-"))).as_py()
        return (
            pa.decimal128(_MAX_DECIMAL_DIGITS, 0) if digits <= _MAX_DECIMAL_DIGITS else pa.string()
        )
    whole = pc.match_substring_regex(texts, _INTEGER).to_pylist()
    for row, (is_whole, text) in enumerate(zip(whole, texts.to_pylist(), strict=True)):
        if is_whole and abs(int(text)) > _EXACT_IN_DOUBLE:
            raise LossyValue(
                name,
                row + 1,
                text,
                f"the whole number {text} among fractions would be rounded as a double",
                f"pass --columns {name}:text to keep it, or {name}:double to accept rounding",
            )
    return inferred


@dataclass(frozen=True, slots=True, eq=False)
class Head:
    """The rows of a file's first block as its schema was read from them, in the form
    ``batches`` gives them, and the byte offset of the rows after them (None: there are
    none). Reading the file's rows from there saves parsing that block twice."""

    batches: list[pa.RecordBatch]
    end: int | None

    @property
    def nbytes(self) -> int:
        return sum(batch.nbytes for batch in self.batches)


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
        return self.schema_and_head(stream)[0]

    def schema_and_head(self, stream: pa.NativeFile) -> tuple[pa.Schema, Head | None]:
        """`schema`, and the first block's rows as `batches` would give them when ``stream``
        holds the file's bytes as they are (no transcoding, no decompression); None when
        they cannot be told apart exactly (blank lines, a number read again as a DECIMAL)."""
        # A stream of its own for each parse: a closed reader may still be reading ahead.
        sample = first_block(stream, self.encoding).read_buffer()
        typed = [(c.name, c.arrow_type) for c in self.columns if not c.is_json]
        explicit = pa.schema(typed) if typed else None
        reader = self._open(pa.BufferReader(sample), explicit, INFER_BLOCK_SIZE, False)
        schema = reader.schema
        hinted = {c.name for c in self.columns}
        doubles = [f.name for f in schema if pa.types.is_float64(f.type) and f.name not in hinted]
        # The sample is the whole file, or its first block and a byte more.
        whole = sample.size <= INFER_BLOCK_SIZE
        # Parsed already: opening the reader parsed the first block to tell its schema.
        blocks = _read_blocks(reader, whole)
        temporal = [f.name for f in schema if pa.types.is_timestamp(f.type)]
        temporal = [n for n in temporal if n not in hinted]
        fields = {f.name: normalize_type(f.type) for f in schema}
        exact = True
        for name in doubles:
            values = pa.chunked_array([b.column(name) for b in blocks], schema.field(name).type)
            if self._whole_beyond_double(sample, name, values):
                fields[name] = pa.decimal128(_MAX_DECIMAL_DIGITS, 0)
                exact = False  # the first block holds it rounded
        texts: list[pa.RecordBatch] = []
        if temporal:
            as_text = pa.schema([(n, pa.string()) for n in temporal])
            reader = self._open(pa.BufferReader(sample), as_text, INFER_BLOCK_SIZE, True)
            texts = _read_blocks(reader, whole)
            for name in temporal:
                values = pa.chunked_array([t.column(name) for t in texts], pa.string())
                fields[name] = _temporal_type(values)
        own = pa.schema(list(fields.items()))
        head = self._head(sample, own, blocks, texts) if exact and blocks else None
        return own, head

    def _head(
        self,
        sample: pa.Buffer,
        own: pa.Schema,
        blocks: list[pa.RecordBatch],
        texts: list[pa.RecordBatch],
    ) -> Head | None:
        """The first block's rows with the types ``batches`` parses them as (temporal
        fields as their text), and where the next row starts: after the block's last line
        feed, if the block holds one row per line feed (else None)."""
        rows = sum(b.num_rows for b in blocks)
        if texts and sum(t.num_rows for t in texts) != rows:
            return None
        data = sample.to_pybytes()
        end: int | None = None
        if len(data) <= INFER_BLOCK_SIZE:
            lines = data.rstrip(b"\r\n").count(b"\n") + 1
        else:
            end = data.rfind(b"\n", 0, INFER_BLOCK_SIZE) + 1
            lines = data.count(b"\n", 0, INFER_BLOCK_SIZE)
        if lines != rows:  # blank lines, or a block cut elsewhere: parse the file anew
            return None
        explicit = self._explicit(own)
        out: list[pa.RecordBatch] = []
        text_rows = pa.Table.from_batches(texts).combine_chunks() if texts else None
        offset = 0
        for block in blocks:
            columns, names = [], []
            for field in block.schema:
                column = block.column(field.name)
                if text_rows is not None and field.name in text_rows.column_names:
                    column = text_rows.column(field.name).slice(offset, block.num_rows)
                    column = column.combine_chunks()
                elif (index := explicit.get_field_index(field.name)) != -1:
                    wanted = explicit.field(index).type
                    if not column.type.equals(wanted):
                        column = column.cast(wanted)
                columns.append(column)
                names.append(field.name)
            out.append(pa.RecordBatch.from_arrays(columns, names=names))
            offset += block.num_rows
        return Head(out, end)

    def _whole_beyond_double(self, sample: pa.Buffer, name: str, values: pa.Array) -> bool:
        """Whether a number field pyarrow reads as double holds whole numbers only, some
        beyond 2**53 (``92233720368547758070``, which a double rounds): then it is a
        DECIMAL(38,0). Fractions among them stay doubles (their text is gone by then)."""
        values = values.drop_null()
        big = pc.greater(pc.abs(values), float(_EXACT_IN_DOUBLE))
        if not len(values) or not pc.any(big).as_py():
            return False
        whole = pa.schema([(name, pa.decimal128(_MAX_DECIMAL_DIGITS, 0))])
        try:
            reader = self._open(pa.BufferReader(sample), whole, INFER_BLOCK_SIZE, True)
        except pa.ArrowInvalid:
            return False
        try:
            reader.read_next_batch()
        except pa.ArrowInvalid:
            return False
        finally:
            reader.close()
        return True

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


def _read_blocks(reader: pa_json.JSONStreamingReader, whole: bool) -> list[pa.RecordBatch]:
    """The first block's rows (every block's, with ``whole``), and the reader closed."""
    try:
        if not whole:
            return [reader.read_next_batch()]
        return list(reader)
    except StopIteration:
        return []
    finally:
        reader.close()


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
        """The fragment's rows (a file, or some of its row groups) in batches of ``batch_rows``.

        pyarrow's dataset scan decodes a whole row group before it hands out its first batch
        and holds it until the last: 60-130 MB for each large row group in flight. Large ones
        are read through ``ParquetFile`` instead, which decodes a batch at a time from the row
        group's compressed bytes (fetched at once). It opens the file by name, which costs a
        HEAD request on S3, so small row groups keep the scan.
        """
        metadata = fragment.metadata
        groups = [group.id for group in fragment.row_groups or ()] or range(metadata.num_row_groups)
        if not any(streamed(metadata.row_group(group)) for group in groups):
            yield from fragment.to_batches(
                batch_size=self.batch_rows, batch_readahead=_PARQUET_READAHEAD, use_threads=True
            )
            return
        import pyarrow.parquet as pq

        with fragment.filesystem.open_input_file(fragment.path) as source:
            file = pq.ParquetFile(source, metadata=metadata, pre_buffer=True)
            for group in groups:  # one at a time: each fetches its bytes when it starts
                yield from file.iter_batches(
                    batch_size=self.batch_rows, row_groups=[group], use_threads=True
                )


def streamed(row_group: pq.RowGroupMetaData) -> bool:
    """Whether :meth:`ParquetReader.batches` decodes this row group a batch at a time."""
    return row_group.total_byte_size >= STREAMED_ROW_GROUP_BYTES


def held_bytes(row_group: pq.RowGroupMetaData) -> int:
    """About what reading one row group holds at once: the whole of it decoded, or, streamed,
    its compressed bytes (fetched at once, then decoded a batch at a time)."""
    if not streamed(row_group):
        return row_group.total_byte_size
    return sum(row_group.column(c).total_compressed_size for c in range(row_group.num_columns))


def check_hint_columns(
    kind: FileKind, columns: tuple[ColumnHint, ...], schema: pa.Schema, name: str
) -> None:
    """A headless CSV must have as many columns as ``--columns`` names."""
    if kind.format == "csv_headless" and columns and len(schema) != len(columns):
        raise UsageError(f"{name} has {len(schema)} columns but --columns names {len(columns)}")
