"""One run: URIs -> source and destination implementations -> Arrow stream -> load.

The scheme of each URI picks the implementation. Registries hold ``module:Class`` strings so
that a run imports only the two modules it uses (the `ingest` path never pays for, or breaks
on, an implementation it does not need). Registering one is one line here.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa

from kingest.runner.console import ARROW_POOL_VARIABLE
from kingest.runner.cursor import CursorTracker, plan_cursor
from kingest.runner.dlt_files import schema_name_for
from kingest.runner.dlt_state import CursorAddress
from kingest.runner.errors import InvalidUri
from kingest.runner.interfaces import Destination, LoadOptions, LoadSummary, Source, SourceStream
from kingest.runner.schema_contract import Contract
from kingest.runner.stream_shape import limit_pages, shape
from kingest.runner.uri import ENV_PREFIX, ParsedUri, is_secret_parameter, parse_uri

SOURCES: dict[str, str] = {
    "s3": "kingest.runner.s3_source:S3Source",
    "duckdb": "kingest.runner.duckdb_source:DuckDBSource",
}
DESTINATIONS: dict[str, str] = {
    "duckdb": "kingest.runner.duckdb_destination:DuckDBDestination",
    "s3": "kingest.runner.s3_destination:S3Destination",
}


@dataclass(frozen=True)
class IngestRequest:
    """What ``kingest ingest`` was asked to do (flags and environment already merged)."""

    source_uri: str
    source_table: str
    dest_uri: str
    dest_table: str
    options: LoadOptions


@dataclass(frozen=True)
class LoadOutcome:
    """A committed load: its id, the destination's summary and what the source read."""

    load_id: str | None
    """None when there was nothing new to load and the destination was left untouched."""
    summary: LoadSummary
    files: int
    bytes: int
    skipped_files: int = 0
    cursor: dict[str, Any] | None = None
    """The incremental cursor after the load (see :meth:`.cursor.CursorTracker.report`)."""


def new_load_id() -> str:
    """A load id in dlt's format: the unix time with its fraction, as a string."""
    return str(time.time())


# How long jemalloc keeps freed pages before returning them to the system. Returned at once
# (jemalloc's default here), every new batch faults fresh zeroed pages in: a 2M-row JSONL
# object spent 0.2-0.3 CPU-seconds more in the kernel; 100 ms costs 10-15 MB of peak RSS.
_FREED_PAGES_KEPT_MS = 100


_POOLS: dict[str, Callable[[], pa.MemoryPool]] = {
    "jemalloc": pa.jemalloc_memory_pool,
    "system": pa.system_memory_pool,
    "mimalloc": pa.mimalloc_memory_pool,
}


def _use_returning_memory_pool() -> None:
    """Allocate Arrow buffers with jemalloc (else the system allocator), or with the pool
    ``ARROW_DEFAULT_MEMORY_POOL`` names. The default, mimalloc, keeps freed pages mapped, and
    a run frees buffers all the time (measured: 40-80 MB less peak RSS on a 1M-row load, at
    the same speed; ten 22 MB JSONL files peaked at 518 MB with mimalloc for everything,
    ~390 MB with jemalloc); jemalloc returns them after a short delay.

    This sets pyarrow's pool, which what pyarrow's Python API allocates comes from. Arrow's
    own readers (dataset scans, Parquet decoding) allocate from Arrow's process default,
    which only ``ARROW_DEFAULT_MEMORY_POOL`` sets, before pyarrow loads: the console script
    sets it to jemalloc (:mod:`.console`).
    """
    with contextlib.suppress(NotImplementedError):
        pa.jemalloc_set_decay_ms(_FREED_PAGES_KEPT_MS)
    named = os.environ.get(ARROW_POOL_VARIABLE, "").strip().lower()
    for name in [named, "jemalloc", "system"]:
        if name in _POOLS:
            try:
                pa.set_memory_pool(_POOLS[name]())
                return
            except NotImplementedError:  # a pyarrow built without it
                continue


def _resolve(registry: Mapping[str, str], uri: ParsedUri) -> type:
    target = registry.get(uri.scheme)
    if target is None:
        flag = "--source-uri" if uri.side == "source" else "--dest-uri"
        raise InvalidUri(
            f"{flag}: {uri.scheme}:// is not supported as a {uri.side}; "
            f"supported: {', '.join(s + '://' for s in sorted(registry))}"
        )
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def prepare(
    request: IngestRequest, environ: Mapping[str, str] | None = None
) -> tuple[Source, Destination]:
    """Parse and validate both sides without any I/O; raises InvalidUri / UsageError."""
    environ = os.environ if environ is None else environ
    source_uri = parse_uri(request.source_uri, "source", environ)
    dest_uri = parse_uri(request.dest_uri, "destination", environ)
    source_cls = _resolve(SOURCES, source_uri)
    dest_cls = _resolve(DESTINATIONS, dest_uri)
    source = source_cls.from_uri(source_uri, request.source_table, request.options)
    destination = dest_cls.from_uri(dest_uri, request.dest_table, request.options.for_destination())
    return source, destination


def _cursor_for(
    source: Source, destination: Destination, options: LoadOptions | None
) -> CursorTracker | None:
    """The cursor this run follows: SQL-like sources with ``--incremental-key`` keep one."""
    if options is None or not options.incremental_key or source.cursor_resource is None:
        return None
    schema_name = schema_name_for(destination.dest_table)
    address = CursorAddress(schema_name, source.cursor_resource, options.incremental_key)
    return CursorTracker(plan_cursor(options, address, destination.stored_state()))


def run(
    source: Source,
    destination: Destination,
    on_open: Callable[[SourceStream], None] | None = None,
    options: LoadOptions | None = None,
) -> LoadOutcome:
    """Open the source, load its stream into the destination, return what was committed.

    The destination says which file versions it already holds (incremental file syncs), so
    the source lists but never reads them; the destination records the new ones in the same
    transaction as their rows, which makes a retried run load each file exactly once. A
    SQL-like source with an incremental key reads from the cursor the destination stored, and
    the destination stores the new cursor in the same commit as the rows (:mod:`.cursor`).

    ``options`` shape the stream on its way, in ingestr's order: ``--yield-limit`` ends the
    source's pages, the cursor sees (and skips its boundary rows among) what remains, then
    masks, names and the contract apply (:mod:`.stream_shape`). The cursor so follows the
    source's own values and only rows that reach the destination.
    """
    _use_returning_memory_pool()
    load_id = new_load_id()
    destination.connect_ahead()
    loaded = destination.loaded_files() if source.reads_files else None
    cursor = _cursor_for(source, destination, options)
    if cursor is not None and cursor.plan.start is not None:
        source = source.resumed_from(cursor.plan.start.last_value)
    with source.open(loaded) as stream:
        if options is not None:
            limit_pages(stream, options)
        if cursor is not None:
            stream.reader = cursor.wrap(stream.reader)
            stream.cursor = cursor
        if options is not None:
            _shape(stream, options, destination)
        if on_open is not None:
            on_open(stream)
        try:
            summary = destination.load(stream, load_id)
        except Exception:
            if stream.error is not None:
                raise stream.error from None
            raise
        return LoadOutcome(
            load_id if summary.committed else None,
            summary,
            stream.stats.files,
            stream.stats.bytes,
            stream.skipped_files,
            cursor.report() if cursor is not None else None,
        )


def _shape(stream: SourceStream, options: LoadOptions, destination: Destination) -> None:
    existing = None
    if options.schema_contract is not Contract.EVOLVE and not options.full_refresh:
        existing = destination.existing_columns(stream.name)
    shape(stream, options, existing)


def secrets_in(request_uris: list[str], environ: Mapping[str, str]) -> list[str]:
    """Every secret value the raw URIs and ``KINGEST_*`` variables carry, for redaction.

    Tolerant of malformed URIs: this runs before (and whether or not) parsing succeeds.
    """
    found: list[str] = []
    for raw in request_uris:
        if not raw:
            continue
        try:
            parts = urlsplit(raw)
            found.extend(v for k, v in parse_qsl(parts.query) if is_secret_parameter(k))
            if parts.password:
                found.append(parts.password)
        except ValueError:
            # Unparseable: the whole URI is treated as secret (messages never quote it anyway).
            found.append(raw)
    for name, value in environ.items():
        for prefix in ENV_PREFIX.values():
            if name.startswith(prefix) and is_secret_parameter(name[len(prefix) :]):
                found.append(value)
    # Very short values would redact unrelated text ("1" in every number) and are no secrets.
    return [s for s in found if len(s) >= 4]
