"""What every source and destination agrees on: load options, the Arrow stream, the summary.

A source turns ``--source-uri`` + ``--source-table`` into a :class:`SourceStream` (a
``pyarrow.RecordBatchReader`` plus live read statistics); a destination consumes one inside its
own all-or-nothing unit and returns a :class:`LoadSummary`. The pipeline only wires the two.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

import pyarrow as pa

from kingest.runner.errors import KingestError, UsageError
from kingest.runner.masking import Mask
from kingest.runner.naming import Naming, normalize
from kingest.runner.schema_contract import Contract
from kingest.runner.uri import ParsedUri

if TYPE_CHECKING:
    from kingest.runner.cursor import CursorTracker


class Strategy(StrEnum):
    """``--incremental-strategy``: how a load combines with what the destination holds."""

    REPLACE = "replace"
    APPEND = "append"
    MERGE = "merge"
    DELETE_INSERT = "delete+insert"
    SCD2 = "scd2"
    NONE = "none"
    """ingestr 0.14's "the source decides": append for every source kingest has."""


# ingestr's `--columns` type names (dlt's data types), plus the SQL spellings people type.
_COLUMN_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "string": pa.string(),
    "varchar": pa.string(),
    "bigint": pa.int64(),
    "int": pa.int64(),
    "integer": pa.int64(),
    "double": pa.float64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "datetime": pa.timestamp("us"),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "binary": pa.binary(),
    "decimal": pa.decimal128(38, 9),
    "json": pa.string(),
    "complex": pa.string(),
}


@dataclass(frozen=True)
class ColumnHint:
    """One ``--columns name:type`` entry."""

    name: str
    type_name: str

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type the column is read as."""
        return _COLUMN_TYPES[self.type_name]

    @property
    def is_json(self) -> bool:
        """Whether the column holds JSON text to be stored as DuckDB ``JSON``."""
        return self.type_name in ("json", "complex")

    @classmethod
    def parse_list(cls, values: list[str]) -> tuple[ColumnHint, ...]:
        """Parse ``--columns`` values (each ``a:bigint,b:text``; the flag may repeat)."""
        hints: list[ColumnHint] = []
        for value in values:
            for item in value.split(","):
                if not item.strip():
                    continue
                name, sep, type_name = item.rpartition(":")
                name, type_name = name.strip(), type_name.strip().lower()
                if not sep or not name:
                    raise UsageError(f"--columns: {item.strip()!r} is not 'name:type'")
                if type_name not in _COLUMN_TYPES:
                    raise UsageError(
                        f"--columns: column {name!r} has unknown type {type_name!r}; "
                        f"known: {', '.join(sorted(_COLUMN_TYPES))}"
                    )
                if any(h.name == name for h in hints):
                    raise UsageError(f"--columns: column {name!r} is given twice")
                hints.append(cls(name, type_name))
        return tuple(hints)


@dataclass(frozen=True)
class LoadOptions:
    """The flags of ``kingest ingest`` that shape a load (URIs and tables travel separately).

    Built from flags that :func:`kingest.runner.cli.load_options` has already parsed and
    checked, so a plain dataclass: no validation library is imported for it.
    """

    strategy: Strategy = Strategy.REPLACE
    primary_key: tuple[str, ...] = ()
    incremental_key: str | None = None
    interval_start: str | None = None
    interval_end: str | None = None
    columns: tuple[ColumnHint, ...] = ()
    full_refresh: bool = False
    page_size: int | None = None
    extract_parallelism: int = 5
    loader_file_format: str | None = None
    loader_file_size: int | None = None
    sql_limit: int | None = None
    sql_exclude_columns: tuple[str, ...] = ()

    # ingestr's stream-shaping flags (see stream_shape.py): masks, names, contract, page limit.
    masks: tuple[Mask, ...] = ()
    schema_naming: Naming = Naming.SNAKE_CASE
    schema_contract: Contract = Contract.EVOLVE
    yield_limit: int | None = None

    def __post_init__(self) -> None:
        # ``none`` is ingestr 0.14's "the source decides": append, for every kingest source.
        strategy = Strategy(self.strategy)
        object.__setattr__(
            self, "strategy", Strategy.APPEND if strategy is Strategy.NONE else strategy
        )

    def for_destination(self) -> LoadOptions:
        """These options with the column names they give (keys, hints) as ``--schema-naming``
        names them in the destination: users name the source's columns."""
        naming = self.schema_naming
        if naming is Naming.DIRECT:
            return self
        key = self.incremental_key
        return replace(
            self,
            primary_key=tuple(normalize(k, naming) for k in self.primary_key),
            incremental_key=normalize(key, naming) if key else key,
            columns=tuple(ColumnHint(normalize(h.name, naming), h.type_name) for h in self.columns),
        )


class ReadStats:
    """What a source has read so far; updated by reader threads, read by the progress line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files = 0
        self.bytes = 0
        self.rows = 0

    def add(self, *, files: int = 0, bytes: int = 0, rows: int = 0) -> None:
        """Count more files, bytes (as stored) or rows read."""
        with self._lock:
            self.files += files
            self.bytes += bytes
            self.rows += rows


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One version of one file a source reads: what the loaded-files record keeps.

    Two versions are the same file version when ``url`` and ``etag`` and ``size`` agree (the
    ETag changes with the content; re-uploading identical bytes does not make a new version).
    Stores without ETags fall back to ``last_modified``.
    """

    url: str
    etag: str
    size: int
    last_modified: datetime | None = None

    def same_version(self, other: SourceFile) -> bool:
        """Whether ``other`` is this file with the same content."""
        if self.etag and other.etag:
            return (self.etag, self.size) == (other.etag, other.size)
        return (self.size, self.last_modified) == (other.size, other.last_modified)


LoadedFiles = Mapping[str, SourceFile]
"""File versions a destination table already holds, by ``url``."""


@dataclass
class SourceStream:
    """An open source: Arrow batches to consume once, and live statistics about them.

    ``name`` is the source's table name (what destinations name their table after when the
    destination only gives a dataset, e.g. ``users`` for ``public.users``). ``total_files``
    and ``total_bytes`` are known up front for file sources (for progress), else None.
    """

    reader: pa.RecordBatchReader
    name: str
    stats: ReadStats = field(default_factory=ReadStats)
    total_files: int | None = None
    total_bytes: int | None = None
    on_close: Callable[[], None] | None = None
    error: KingestError | None = None
    """Set by a source whose batches failed: the pipeline reports it instead of the consumer's
    (e.g. DuckDB's) wrapped exception."""
    files: list[SourceFile] | None = None
    """The file versions this stream reads, for destinations that record loaded files; None
    for sources that are not made of files."""
    skipped_files: int = 0
    """Matched files left out because the destination already holds their version (or, with
    ``--incremental-key _ingestr_source_file_modified_at``, modified outside the interval)."""
    cursor: CursorTracker | None = None
    """Follows the ``--incremental-key`` cursor through the stream (SQL-like sources): a
    destination stores ``cursor.update()`` in its pipeline state, in the load's commit."""

    def close(self) -> None:
        """Release readers, threads and temporary files (idempotent)."""
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True)
class LoadSummary:
    """What a destination committed: rows per table and the table the user named."""

    rows: int
    destination_table: str
    tables: dict[str, int] = field(default_factory=dict)
    committed: bool = True
    """False when there was nothing to load and the destination was left as it was."""

    def written(self) -> dict[str, int]:
        """What the load wrote as files (`files_written`, `bytes_written`, `objects_written`),
        for destinations made of files; empty for a database."""
        return {}


class Source(ABC):
    """A place data is read from, e.g. an S3 glob or a DuckDB table."""

    reads_files: bool = False
    """Whether the source is made of files whose versions a destination can record."""

    cursor_resource: str | None = None
    """The dlt resource name an ``--incremental-key`` cursor of this source is stored under
    (``users`` for ``public.users``); None for sources that keep no cursor (files)."""

    def resumed_from(self, value: Any) -> Self:
        """This source reading only rows whose incremental key is ``>= value`` (the stored
        cursor); only sources with a :attr:`cursor_resource` implement it."""
        raise NotImplementedError

    @classmethod
    @abstractmethod
    def from_uri(cls, uri: ParsedUri, table: str, options: LoadOptions) -> Self:
        """Validate the URI and ``--source-table``; raise before any I/O on bad input."""

    @abstractmethod
    def open(self, loaded: LoadedFiles | None = None) -> SourceStream:
        """Resolve what to read (list, open) and return the stream; raises KingestError.

        A source made of files leaves out the file versions in ``loaded`` (what the
        destination table already holds) and lists the ones it reads in ``stream.files``;
        other sources ignore it.
        """


class Destination(ABC):
    """A place data is loaded into, all or nothing, e.g. a DuckDB file or an S3 dataset."""

    dest_table: str
    """``--dest-table`` as given: ingestr names the dlt pipeline after it."""

    @classmethod
    @abstractmethod
    def from_uri(cls, uri: ParsedUri, table: str, options: LoadOptions) -> Self:
        """Validate the URI and ``--dest-table``; raise before any I/O on bad input."""

    @abstractmethod
    def load(self, stream: SourceStream, load_id: str) -> LoadSummary:
        """Consume ``stream`` in one all-or-nothing unit tagged ``load_id``; raise KingestError.

        A destination that records loaded files stores ``stream.files`` in the same unit.
        """

    def connect_ahead(self) -> None:  # noqa: B027 - an optional hook: nothing by default
        """Start connecting on a thread while the source opens; the load waits for it.

        A short run spends a noticeable share of its time making clients and connections
        (all Python, holding the GIL) while the source's first reads (DuckDB, Arrow, network)
        leave the GIL free. The default: connect when the load starts.
        """

    def stored_state(self) -> dict[str, Any] | None:
        """The newest committed dlt pipeline state of this destination table (None if none)."""
        return None

    def existing_columns(self, stream_name: str) -> Mapping[str, str] | None:
        """The columns (dlt data types) of the table a stream named ``stream_name`` loads
        into, for ``--schema-contract``; None when it does not exist or a full refresh drops
        it. The default: the destination does not know (every contract acts as evolve)."""
        return None

    def loaded_files(self) -> LoadedFiles | None:
        """The file versions the destination table holds and a run must not load again.

        None (the default) when the destination does not record loaded files, or when this
        run's strategy loads everything anyway (replace, merge, delete+insert, full refresh).
        """
        return None
