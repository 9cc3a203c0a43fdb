"""S3 (and S3-compatible stores) as a source: the objects a glob matches, as one Arrow stream.

Listing goes through botocore, the bytes through pyarrow's native S3 client, both made by
:mod:`kingest.runner.s3_client`; several files are read at once (``--extract-parallelism``),
each streamed block by block, a large one as byte ranges (:mod:`kingest.runner.byte_ranges`)
or row groups.

Before any data moves, every matched file's schema is read (first block or Parquet footer,
in parallel) and unified, so the stream has one schema for all files. What that pass reads
is kept for the rows, within a memory budget (`_Kept`): a text file the schema's first block
holds (4 MB) is read whole, once (in a bucket of many small files the request is most of a
file's cost), and a Parquet footer once.

Which objects are read is decided by :mod:`kingest.runner.s3_listing`. Incremental file
syncs: the listing keeps each object's ETag, size and last-modified time.
File versions the destination already holds are left out before anything is read, and
``--incremental-key _ingestr_source_file_modified_at`` (ingestr's opt-in mode) keeps only
objects modified in ``[--interval-start, --interval-end]`` and adds the object's path and
modification time to every row.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, Self

import botocore.session
import pyarrow as pa
import pyarrow.fs as pafs
from botocore.exceptions import NoCredentialsError

from kingest.runner import byte_ranges
from kingest.runner.byte_ranges import ends_cleanly, read_lines, splittable
from kingest.runner.errors import (
    AccessDenied,
    BucketNotFound,
    DataError,
    KingestError,
    SourceUnavailable,
    UsageError,
)
from kingest.runner.formats import (
    INFER_BLOCK_SIZE,
    CsvReader,
    FileKind,
    Head,
    JsonLinesReader,
    ParquetReader,
    conform,
    held_bytes,
    unify_schemas,
)
from kingest.runner.glob import ObjectGlob
from kingest.runner.interfaces import LoadedFiles, LoadOptions, Source, SourceStream
from kingest.runner.positions import describe_data_error, text_opener
from kingest.runner.prefetch import Lookahead, ordered_parallel
from kingest.runner.s3_client import client_for, filesystem_for, session_for
from kingest.runner.s3_listing import (
    ObjectSelection,
    S3Object,
    parse_instant,
    partition_type,
)
from kingest.runner.uri import ParsedUri, S3Uri

if TYPE_CHECKING:
    from pyarrow.dataset import ParquetFileFragment

SOURCE_FILE_COLUMN = "_ingestr_source_file_path"
MODIFIED_AT_COLUMN = "_ingestr_source_file_modified_at"

# Bytes fetched per GET while streaming a CSV/JSONL file. The readers ask for 1 MiB blocks;
# unbuffered, each would be a request of its own (a round trip, signing on both ends).
_READ_BUFFER = 4 * 1024 * 1024
# Uncompressed Parquet row groups read at once (see S3Source._batches).
ROW_GROUP_BYTES_IN_FLIGHT = 128 * 1024 * 1024
# Text files up to this size (up to the first block when its bytes are the text) are fetched
# once, for their schema and their rows (`_Kept`); at most _KEPT_BYTES of them and of Parquet
# footers are kept at a time. Keeping a larger file's first block and reading the rest from
# where it ends (ten 14 MB CSV files) was no faster and cost 60-90 MB of peak RSS.
_SMALL_FILE = 256 * 1024
_KEPT_BYTES = 64 * 1024 * 1024
# What the schema pass reads of a larger text file: its first block (see formats.first_block).
_HEAD_BYTES = INFER_BLOCK_SIZE + 1


class _Kept:
    """What the schema pass read, kept until the file's rows are read: small text files
    whole, Parquet files' footers (as their fragments), JSONL files' first blocks as parsed
    rows (`formats.Head`).

    Thread-safe: schemas are read in parallel. Memory stays within `budget` bytes; a file
    beyond it is simply read again.
    """

    def __init__(self, budget: int = _KEPT_BYTES) -> None:
        self._left = budget
        self._kept: dict[str, tuple[pa.Buffer | ParquetFileFragment, int]] = {}
        self._heads: dict[str, Head] = {}
        self._lock = threading.Lock()

    def _reserve(self, size: int) -> bool:
        with self._lock:
            if size > self._left:
                return False
            self._left -= size
            return True

    def _take(self, path: str) -> pa.Buffer | ParquetFileFragment | None:
        with self._lock:
            kept, size = self._kept.pop(path, (None, 0))
            self._left += size
        return kept

    def open(
        self, fs: pafs.S3FileSystem, path: str, obj: S3Object, whole_block: bool
    ) -> pa.NativeFile:
        """The object's (decompressed) bytes, fetched whole and kept if small enough: up to
        _SMALL_FILE, or with ``whole_block`` (an uncompressed object whose bytes are the text
        the schema pass parses) up to the first block, which that pass would read anyway."""
        if obj.size > (_HEAD_BYTES if whole_block else _SMALL_FILE) or not self._reserve(obj.size):
            return fs.open_input_stream(path, compression=obj.kind.compression)
        with fs.open_input_stream(path, compression=None) as raw:
            # In one request: read to its end, a stream is fetched in 256 KB chunks. Bytes
            # beyond the listed size (the object rewritten since) are read on, not lost.
            data = raw.read_buffer(obj.size)
            if more := raw.read_buffer():
                data = pa.py_buffer(data.to_pybytes() + more.to_pybytes())
        self._kept[path] = (data, obj.size)
        return pa.input_stream(data, compression=obj.kind.compression)

    def take(self, path: str, compression: str | None) -> pa.NativeFile | None:
        """The kept object's bytes, no longer kept; None if it was not."""
        data = self._take(path)
        return None if data is None else pa.input_stream(data, compression=compression)

    def keep_fragment(self, path: str, fragment: ParquetFileFragment) -> None:
        """Keep a fragment whose footer was read: its rows are then read without reading
        the footer again."""
        size = fragment.metadata.serialized_size
        if self._reserve(size):
            self._kept[path] = (fragment, size)

    def take_fragment(self, path: str) -> ParquetFileFragment | None:
        """The kept fragment, no longer kept; None if it was not."""
        return self._take(path)  # type: ignore[return-value]

    def keep_head(self, path: str, head: Head) -> None:
        """Keep the rows of a file's first block, parsed by the schema pass; the file's bytes,
        if kept, go when those rows are all of it."""
        if not self._reserve(head.nbytes):
            return
        with self._lock:
            self._heads[path] = head
        if head.end is None:
            self._take(path)

    def take_head(self, path: str) -> Head | None:
        """The kept first block's rows, no longer kept; None if they were not."""
        with self._lock:
            head = self._heads.pop(path, None)
            if head is not None:
                self._left += head.nbytes
        return head


@dataclass(frozen=True, slots=True, eq=False)
class _Piece:
    """What one reader task reads of object ``index``: all of it (``end`` None), its bytes
    ``[start, end)`` (as lines starting there), one row group (``fragment``), or all of it
    from record start ``start`` on. ``last``: the object's last piece."""

    index: int
    start: int = 0
    end: int | None = None
    last: bool = True
    fragment: ParquetFileFragment | None = None
    rows_before: int = 0
    skip_rows: int = 0


class _Rows(NamedTuple):
    """Rows of a byte range, certain to be those a single stream reads there."""

    piece: _Piece
    batch: pa.RecordBatch


class _Lines(NamedTuple):
    """The lines starting in a byte range, and the offset of the first."""

    offset: int
    data: pa.Buffer


class _RangeDone(NamedTuple):
    """A byte range whose rows have all been handed out."""

    piece: _Piece


class _Resume(NamedTuple):
    """A byte range that cannot stand on its own: its object is read as one stream from
    ``offset``, the range's first record start, past the ``rows`` already handed out."""

    piece: _Piece
    offset: int
    rows: int


@dataclass
class _Plan:
    """What to read, resolved by listing and reading schemas."""

    objects: list[S3Object]
    schemas: list[pa.Schema]
    target: pa.Schema
    partition_types: dict[str, pa.DataType] = field(default_factory=dict)
    kept: _Kept = field(default_factory=_Kept)


def _largest_row_group(pieces: list[_Piece]) -> int:
    """What reading the largest row group of the Parquet files among ``pieces`` whose footer
    was read holds at once (0 if none; see :func:`formats.held_bytes`)."""
    largest, seen = 0, set()
    for piece in pieces:
        if piece.fragment is None or piece.index in seen:
            continue
        seen.add(piece.index)
        metadata = piece.fragment.metadata
        for number in range(metadata.num_row_groups):
            largest = max(largest, held_bytes(metadata.row_group(number)))
    return largest


def _arrow_error(exc: OSError, url: str) -> KingestError:
    text = str(exc)
    if "ACCESS_DENIED" in text or "AccessDenied" in text or "403" in text:
        return AccessDenied(f"access denied reading {url}")
    if "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text:
        return BucketNotFound(f"bucket of {url} does not exist")
    if "NoSuchKey" in text or "NO_SUCH_KEY" in text or "Path does not exist" in text:
        return SourceUnavailable(f"{url} disappeared while the run was reading it")
    return SourceUnavailable(f"reading {url} failed: {text}")


class S3Source(Source):
    """Objects in an S3 bucket matched by ``--source-table <bucket>/<glob>[#hints]``."""

    reads_files = True

    def __init__(self, uri: S3Uri, glob: ObjectGlob, options: LoadOptions) -> None:
        self.uri = uri
        self.glob = glob
        self.options = options
        # ingestr's opt-in mode: objects selected by modification time, which rows carry.
        self.by_modified_at = options.incremental_key == MODIFIED_AT_COLUMN
        self.modified_from: datetime | None = None
        self.modified_until: datetime | None = None
        if self.by_modified_at and options.interval_start:
            self.modified_from = parse_instant(options.interval_start, "--interval-start")
        if self.by_modified_at and options.interval_end:
            self.modified_until = parse_instant(options.interval_end, "--interval-end")
        self.selection = ObjectSelection(
            uri, glob, self.by_modified_at, self.modified_from, self.modified_until
        )

    @classmethod
    def from_uri(cls, uri: ParsedUri, table: str, options: LoadOptions) -> Self:
        """Validate the ``s3://`` URI and the ``bucket/glob`` table (no I/O)."""
        return cls(S3Uri.from_parsed(uri), ObjectGlob.parse(table), options)

    # -- connections ----------------------------------------------------------------------

    def _filesystem(self, session: botocore.session.Session, region: str) -> pafs.S3FileSystem:
        try:
            return filesystem_for(self.uri, session, region)
        except NoCredentialsError:
            raise AccessDenied(
                "no AWS credentials: set access_key_id and secret_access_key in the source URI "
                "(or KINGEST_SOURCE_ACCESS_KEY_ID / KINGEST_SOURCE_SECRET_ACCESS_KEY), or "
                "configure the default chain (AWS_* variables, web identity, instance role)"
            ) from None

    # -- reading --------------------------------------------------------------------------

    def _reader_for(self, kind: FileKind) -> CsvReader | JsonLinesReader | ParquetReader:
        if kind.family == "csv":
            headless = kind.format == "csv_headless"
            return CsvReader(self.glob.hints, self.options.columns, headless, self.uri.null_tokens)
        if kind.family == "jsonl":
            return JsonLinesReader(self.glob.hints, self.options.columns)
        return ParquetReader(self.options.page_size)

    def _path(self, obj: S3Object) -> str:
        return f"{self.glob.bucket}/{obj.key}"

    def _read_schema(
        self, fs: pafs.S3FileSystem, obj: S3Object, spool: str, kept: _Kept
    ) -> pa.Schema:
        url = obj.url(self.glob.bucket)
        reader = self._reader_for(obj.kind)
        try:
            if isinstance(reader, ParquetReader):
                fragment = self._parquet_fragment(fs, obj, spool)
                schema = reader.schema(fragment)
                kept.keep_fragment(self._path(obj), fragment)
                return schema
            # Transcoded or decompressed, the first block holds less of the object.
            whole_block = obj.kind.compression is None and (
                (self.glob.hints.encoding or "utf8").lower() in ("utf8", "utf-8")
            )
            with kept.open(fs, self._path(obj), obj, whole_block) as stream:
                if not isinstance(reader, JsonLinesReader) or not whole_block:
                    return reader.schema(stream)
                schema, head = reader.schema_and_head(stream)
            # Its rows are read from the end of the first block on, unless it is read in
            # byte ranges.
            if head is not None and not splittable(obj.kind, self.glob.hints.encoding, obj.size):
                kept.keep_head(self._path(obj), head)
            return schema
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
            names = self._column_names(fs, obj) if isinstance(reader, CsvReader) else []
            own = pa.schema([(n, pa.string()) for n in names])
            raise DataError(self._describe_data_error(exc, fs, obj, own, 0)) from None
        except pa.ArrowNotImplementedError as exc:
            raise DataError(f"{url}: unsupported content: {exc}") from None
        except OSError as exc:
            raise _arrow_error(exc, url) from None

    def _column_names(self, fs: pafs.S3FileSystem, obj: S3Object) -> list[str]:
        """A CSV file's column names, read without type hints (to name a failing column)."""
        if obj.kind.format == "csv_headless" and self.options.columns:
            return [c.name for c in self.options.columns]
        plain = CsvReader(self.glob.hints, (), obj.kind.format == "csv_headless")
        try:
            path = self._path(obj)
            with fs.open_input_stream(path, compression=obj.kind.compression) as stream:
                return plain.schema(stream).names
        except (OSError, pa.ArrowException):
            return []

    def _parquet_fragment(
        self, fs: pafs.S3FileSystem, obj: S3Object, spool: str
    ) -> ParquetFileFragment:
        if obj.kind.compression is None:
            # The listed size spares the HEAD request opening an object by name costs.
            return ParquetReader.fragment(self._path(obj), fs, obj.size)
        # Parquet needs random access: a compressed one is decompressed to local disk first.
        local = os.path.join(spool, obj.key.replace("/", "_"))
        if not os.path.exists(local):
            with (
                fs.open_input_stream(self._path(obj), compression=obj.kind.compression) as src,
                open(local, "wb") as dst,
            ):
                shutil.copyfileobj(src, dst, 8 * 1024 * 1024)
        return ParquetReader.fragment(local, pafs.LocalFileSystem(), None)

    def _text_batches(
        self,
        fs: pafs.S3FileSystem,
        obj: S3Object,
        reader: CsvReader | JsonLinesReader,
        own: pa.Schema,
        target: pa.Schema,
        kept: _Kept,
        start: int = 0,
    ) -> Iterator[pa.RecordBatch]:
        path, compression = self._path(obj), obj.kind.compression
        if start:
            # The rest of an object from a record start (never compressed): of a split one,
            # or after the first block's kept rows.
            with fs.open_input_file(path) as raw:
                raw.seek(start)
                stream = pa.BufferedInputStream(raw, _READ_BUFFER)
                if isinstance(reader, CsvReader):
                    yield from reader.batches(stream, own, target, after_header=True)
                else:
                    yield from reader.batches(stream, own, target)
            return
        head = kept.take_head(path)
        if head is not None:
            # The first block's rows, as the schema pass parsed them; the rest from there.
            yield from head.batches
            if head.end is not None:
                yield from self._text_batches(fs, obj, reader, own, target, kept, head.end)
            return
        opened = kept.take(path, compression)
        if opened is None:
            opened = fs.open_input_stream(path, compression=compression, buffer_size=_READ_BUFFER)
        with opened as file:
            yield from reader.batches(file, own, target)

    def _plan(self, fs: pafs.S3FileSystem, objects: list[S3Object], spool: str) -> _Plan:
        workers = max(1, min(self.options.extract_parallelism * 2, len(objects), 32))
        kept = _Kept()
        # Files of one layout share one schema object (a 3-column one holds 1.5 KB; a bucket
        # of many small files had one per file until the run ended).
        distinct: dict[pa.Schema, pa.Schema] = {}

        def schema_of(obj: S3Object) -> pa.Schema:
            schema = self._read_schema(fs, obj, spool, kept)
            return distinct.setdefault(schema, schema)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="schema") as pool:
            schemas = list(pool.map(schema_of, objects))
        named = [(o.url(self.glob.bucket), s) for o, s in zip(objects, schemas, strict=True)]
        target = unify_schemas(named)
        fields = list(target)
        for hint in self.options.columns:
            index = target.get_field_index(hint.name)
            if index == -1:
                if objects[0].kind.format != "csv_headless":
                    raise UsageError(
                        f"--columns names {hint.name!r}, which no matched file has "
                        f"(columns: {', '.join(target.names)})"
                    )
                continue
            if not hint.is_json:
                fields[index] = pa.field(hint.name, hint.arrow_type)
        partition_types: dict[str, pa.DataType] = {}
        for name in dict.fromkeys(k for o in objects for k, _ in o.partitions):
            values = [v for o in objects for k, v in o.partitions if k == name]
            partition_types[name] = partition_type(values)
        fields = [f for f in fields if f.name not in partition_types]
        fields += [pa.field(n, t) for n, t in partition_types.items()]
        if self.uri.include_file_path or self.by_modified_at:
            fields.append(pa.field(SOURCE_FILE_COLUMN, pa.string()))
        if self.by_modified_at:
            fields.append(pa.field(MODIFIED_AT_COLUMN, pa.timestamp("us", tz="UTC")))
        return _Plan(objects, schemas, pa.schema(fields), partition_types, kept)

    def _extras(self, plan: _Plan, obj: S3Object) -> dict[str, pa.Scalar]:
        """The columns every row of ``obj`` gets: partition values, file path, modified-at."""
        extras: dict[str, pa.Scalar] = {
            name: pa.scalar(value if value != "__HIVE_DEFAULT_PARTITION__" else None).cast(
                plan.partition_types[name]
            )
            for name, value in obj.partitions
        }
        if self.uri.include_file_path or self.by_modified_at:
            extras[SOURCE_FILE_COLUMN] = pa.scalar(obj.url(self.glob.bucket))
        if self.by_modified_at:
            extras[MODIFIED_AT_COLUMN] = pa.scalar(obj.last_modified, pa.timestamp("us", tz="UTC"))
        return extras

    @staticmethod
    def _decorate(
        batch: pa.RecordBatch, extras: dict[str, pa.Scalar], target: pa.Schema
    ) -> pa.RecordBatch:
        for name, value in extras.items():
            column = pa.repeat(value, batch.num_rows)
            index_in = batch.schema.get_field_index(name)
            batch = (
                batch.set_column(index_in, name, column)
                if index_in != -1
                else batch.append_column(name, column)
            )
        return conform(batch, target)

    def _file_batches(
        self,
        fs: pafs.S3FileSystem,
        plan: _Plan,
        piece: _Piece,
        stream_state: SourceStream,
        spool: str,
    ) -> Iterator[pa.RecordBatch]:
        """A whole object, one row group of one, or the rest of one from ``piece.start``,
        streamed; counted as a read file when ``piece.last``."""
        obj, own = plan.objects[piece.index], plan.schemas[piece.index]
        url = obj.url(self.glob.bucket)
        reader = self._reader_for(obj.kind)
        extras = self._extras(plan, obj)
        rows = piece.rows_before
        try:
            if isinstance(reader, ParquetReader):
                fragment = piece.fragment or plan.kept.take_fragment(self._path(obj))
                if fragment is None:
                    fragment = self._parquet_fragment(fs, obj, spool)
                batches = reader.batches(fragment)
            else:
                batches = self._text_batches(
                    fs, obj, reader, own, plan.target, plan.kept, piece.start
                )
            skip = piece.skip_rows
            for batch in batches:
                if skip:
                    # Rows a byte range of this object already handed out.
                    taken = min(skip, batch.num_rows)
                    skip -= taken
                    rows += taken
                    batch = batch.slice(taken)
                    if not batch.num_rows:
                        continue
                out = self._decorate(batch, extras, plan.target)
                rows += batch.num_rows
                stream_state.stats.add(rows=batch.num_rows)
                yield out
            if piece.last:
                stream_state.stats.add(files=1, bytes=obj.size)
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
            error = DataError(self._describe_data_error(exc, fs, obj, own, rows))
            stream_state.error = error
            raise error from None
        except OSError as exc:
            error = _arrow_error(exc, url)
            stream_state.error = error
            raise error from None

    def _fetch_range(self, fs: pafs.S3FileSystem, plan: _Plan, piece: _Piece) -> _Lines:
        """The lines starting in a byte range, fetched with one ranged GET (and more if its
        last line runs on past the range)."""
        obj = plan.objects[piece.index]
        assert piece.end is not None
        # A handle of its own (reads at an offset on a shared one copy the bytes).
        with fs.open_input_file(self._path(obj)) as file:
            return _Lines(*read_lines(file, piece.start, piece.end, obj.size))

    def _range_results(
        self,
        plan: _Plan,
        piece: _Piece,
        ranges: Lookahead[_Piece, _Lines],
        stream_state: SourceStream,
    ) -> Iterator[_Rows | _RangeDone | _Resume]:
        """One byte range of a text object (its lines from ``ranges``): its rows as long as
        it is certain they are those a single stream reads there, else where to resume as one
        stream.

        The last batch is held back until the range is parsed: only the range's last row
        tells whether its end was a record boundary (see :mod:`kingest.runner.byte_ranges`).
        """
        obj, own = plan.objects[piece.index], plan.schemas[piece.index]
        try:
            offset, data = ranges.take(piece)
        except OSError as exc:
            error = _arrow_error(exc, obj.url(self.glob.bucket))
            stream_state.error = error
            raise error from None
        if not data:  # the range's lines all started in the ranges before it
            yield _RangeDone(piece)
            return
        reader = self._reader_for(obj.kind)
        stream = pa.BufferReader(data)
        extras = self._extras(plan, obj)
        handed_out = 0
        held: pa.RecordBatch | None = None
        try:
            if isinstance(reader, CsvReader):
                parsed = reader.batches(stream, own, plan.target, after_header=offset > 0)
            else:
                parsed = reader.batches(stream, own, plan.target)
            for batch in parsed:
                if not batch.num_rows:
                    continue
                if held is not None:
                    yield _Rows(piece, self._decorate(held, extras, plan.target))
                    handed_out += held.num_rows
                held = batch
            # JSON strings hold no raw line breaks: every JSONL cut is a record boundary.
            clean = (
                piece.last
                or held is None
                or not isinstance(reader, CsvReader)
                or ends_cleanly([held.slice(held.num_rows - 1)])
            )
            last = None if held is None else self._decorate(held, extras, plan.target)
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
            # Bad data, or a cut inside a quoted value: the single stream tells which.
            clean = False
        if not clean:
            yield _Resume(piece, offset, handed_out)
            return
        if last is not None:
            yield _Rows(piece, last)
        yield _RangeDone(piece)

    def _pieces(self, plan: _Plan) -> list[_Piece]:
        """What the reader tasks read, in order: large text objects as byte ranges, large
        Parquet objects by row group, everything else whole."""
        pieces: list[_Piece] = []
        encoding = self.glob.hints.encoding
        for index, obj in enumerate(plan.objects):
            if splittable(obj.kind, encoding, obj.size):
                pieces += [
                    _Piece(index, start, end, last=end == obj.size)
                    for start, end in byte_ranges.cut(obj.size, byte_ranges.RANGE_BYTES)
                ]
                continue
            fragment = None
            if obj.kind.family == "parquet":
                fragment = plan.kept.take_fragment(self._path(obj))
            groups = fragment.metadata.num_row_groups if fragment is not None else 0
            if fragment is None or groups < 2 or obj.size < byte_ranges.SPLIT_FROM_BYTES:
                pieces.append(_Piece(index, fragment=fragment))
                continue
            rows = 0
            for number, group in enumerate(fragment.split_by_row_group()):
                pieces.append(
                    _Piece(index, fragment=group, last=number == groups - 1, rows_before=rows)
                )
                rows += fragment.metadata.row_group(number).num_rows
        return pieces

    def _batches(
        self, fs: pafs.S3FileSystem, plan: _Plan, stream_state: SourceStream, spool: str
    ) -> Iterator[pa.RecordBatch]:
        """Every object's rows in order, ``--extract-parallelism`` pieces read at once.

        A byte range that cannot stand on its own (:class:`_Resume`) stops the parallel
        read: its object is read on from there as one stream, then the pieces after it.
        """
        pieces = self._pieces(plan)
        parallelism = self.options.extract_parallelism
        if any(piece.end is not None for piece in pieces):
            # A piece starts once the one this many places before it is consumed: this bounds
            # the ranges held at once, whichever thread runs first.
            parallelism = min(parallelism, byte_ranges.RANGES_IN_FLIGHT)
        elif any(piece.fragment is not None and not piece.last for piece in pieces):
            # Row groups decode on pyarrow's CPU pool: more of them in flight than cores
            # only holds more of them in memory (2 cores, 76 MB object in 8 row groups: 5 at
            # once 489 MB peak, 2 at once 415 MB, at the same speed).
            parallelism = min(parallelism, max(2, os.cpu_count() or 1))
        if largest := _largest_row_group(pieces):
            # A row group in flight holds all of itself decoded, or (a large one, decoded a
            # batch at a time) its compressed bytes: see ParquetReader.batches. Before large
            # ones were streamed, ten files of one 59 MB row group each peaked at 839-881 MB
            # with 5 at once, 542-560 MB with 2 (as fast; 1 at once: 517-569 MB, 4% slower).
            parallelism = min(parallelism, max(1, ROW_GROUP_BYTES_IN_FLIGHT // largest))

        # The next range's bytes download while this one's are parsed.
        ranges = Lookahead(
            [piece for piece in pieces if piece.end is not None],
            lambda piece: self._fetch_range(fs, plan, piece),
            ahead=byte_ranges.RANGES_AHEAD,
        )

        def produce(piece: _Piece) -> Iterator[pa.RecordBatch | _Rows | _RangeDone | _Resume]:
            if piece.end is None:
                return self._file_batches(fs, plan, piece, stream_state, spool)
            return self._range_results(plan, piece, ranges, stream_state)

        try:
            yield from self._pieces_in_order(
                fs, plan, pieces, produce, parallelism, stream_state, spool
            )
        finally:
            ranges.close()

    def _pieces_in_order(
        self,
        fs: pafs.S3FileSystem,
        plan: _Plan,
        pieces: list[_Piece],
        produce: Callable[[_Piece], Iterator[pa.RecordBatch | _Rows | _RangeDone | _Resume]],
        parallelism: int,
        stream_state: SourceStream,
        spool: str,
    ) -> Iterator[pa.RecordBatch]:
        rows_read: dict[int, int] = {}
        position = 0
        while position < len(pieces):
            results = ordered_parallel(pieces[position:], produce, parallelism=parallelism)
            resume: _Resume | None = None
            try:
                for result in results:
                    if isinstance(result, _Resume):
                        resume = result
                        break
                    if isinstance(result, _Rows):
                        index, rows = result.piece.index, result.batch.num_rows
                        rows_read[index] = rows_read.get(index, 0) + rows
                        stream_state.stats.add(rows=rows)
                        yield result.batch
                    elif isinstance(result, _RangeDone):
                        if result.piece.last:
                            size = plan.objects[result.piece.index].size
                            stream_state.stats.add(files=1, bytes=size)
                    else:
                        yield result
            finally:
                results.close()
            if resume is None:
                return
            index = resume.piece.index
            rest = _Piece(
                index,
                start=resume.offset,
                rows_before=rows_read.get(index, 0) - resume.rows,
                skip_rows=resume.rows,
            )
            yield from self._file_batches(fs, plan, rest, stream_state, spool)
            position = pieces.index(resume.piece) + 1
            while position < len(pieces) and pieces[position].index == index:
                position += 1

    def _describe_data_error(
        self, exc: Exception, fs: pafs.S3FileSystem, obj: S3Object, own: pa.Schema, rows: int
    ) -> str:
        path, kind = self._path(obj), obj.kind
        opener = None
        if kind.family != "parquet":
            opener = text_opener(
                lambda: fs.open_input_stream(path, compression=kind.compression),
                self.glob.hints.encoding,
            )
        return describe_data_error(
            exc, obj.url(self.glob.bucket), own.names, rows, file_format=kind.format, opener=opener
        )

    def open(self, loaded: LoadedFiles | None = None) -> SourceStream:
        """List the glob, read and unify the schemas, and stream every file to load.

        Matched objects whose version is in ``loaded`` (or, by modification time, outside
        the interval) are not read; the stream's ``files`` lists the versions it reads.
        """
        session = session_for(self.uri)
        client = client_for(self.uri, self.glob.bucket, session)
        matched, region, listed = self.selection.list(client)
        matched_objects = self.selection.objects(matched, listed)
        objects = self.selection.to_read(matched_objects, loaded)
        skipped = len(matched_objects) - len(objects)
        name = self.glob.pattern.rsplit("/", 1)[-1]
        if not objects:
            return SourceStream(
                reader=pa.RecordBatchReader.from_batches(pa.schema([]), iter(())),
                name=name,
                total_files=0,
                total_bytes=0,
                files=[],
                skipped_files=skipped,
            )
        fs = self._filesystem(session, region)
        spool = tempfile.mkdtemp(prefix="kingest-")
        try:
            plan = self._plan(fs, objects, spool)
        except BaseException:
            shutil.rmtree(spool, ignore_errors=True)
            raise
        stream = SourceStream(
            reader=pa.RecordBatchReader.from_batches(plan.target, iter(())),
            name=name,
            total_files=len(objects),
            total_bytes=sum(o.size for o in objects),
            files=[o.version(self.glob.bucket) for o in objects],
            skipped_files=skipped,
        )
        batches = self._batches(fs, plan, stream, spool)
        stream.reader = pa.RecordBatchReader.from_batches(plan.target, batches)

        def close() -> None:
            batches.close()
            shutil.rmtree(spool, ignore_errors=True)

        stream.on_close = close
        return stream
