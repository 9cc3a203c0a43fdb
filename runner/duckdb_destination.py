"""DuckDB files as a destination: one transaction per run, bookkept like dlt/ingestr.

The whole run is one DuckDB transaction: the table change, ``_dlt_loads``,
``_dlt_version`` and ``_dlt_pipeline_state`` rows commit together or not at all. A database
file the run created is removed again if the run fails, so a failed run leaves the path
exactly as it found it.

Bookkeeping follows what ingestr 0.14 (dlt) writes into ``<schema>``: ``_dlt_loads``
(load_id, schema_name, status 0, inserted_at, schema_version_hash), ``_dlt_version`` (the
stored dlt schema) and ``_dlt_pipeline_state``; loaded rows carry ``_dlt_load_id`` and a
``_dlt_id`` of their own (dlt's format: 10 random bytes, base64, 14 characters). As in
ingestr, the pipeline is named after the sha256 of ``--dest-table``, and its schema after the
pipeline as dlt normalises it.

Loads from files (S3) also record every file version they loaded in
``<schema>._kingest_loaded_files``, in the same transaction as the rows. An append run asks
for that record first and the source skips what it holds, so a scheduled sync loads each file
once, also when a run dies mid-load and is retried (its transaction never committed).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import duckdb
import pyarrow as pa

from kingest.runner import dlt_files, dlt_state, scd2
from kingest.runner.errors import DestinationError, UsageError
from kingest.runner.interfaces import (
    Destination,
    LoadedFiles,
    LoadOptions,
    LoadSummary,
    SourceFile,
    SourceStream,
    Strategy,
)
from kingest.runner.uri import DuckDBUri, ParsedUri

if TYPE_CHECKING:
    from kingest.runner.cursor import CursorTracker

LOAD_ID_COLUMN = "_dlt_load_id"
ROW_ID_COLUMN = "_dlt_id"
STREAM_VIEW = "kingest_source_stream"
_EMPTY_VIEW = "kingest_source_shape"
STAGE_TABLE = "kingest_stage"
LOADED_FILES_TABLE = "_kingest_loaded_files"
_NEW_FILES_VIEW = "kingest_new_files"
_LOADED_FILES_DDL = """CREATE TABLE IF NOT EXISTS {s}."_kingest_loaded_files" (
    table_name VARCHAR NOT NULL, file_url VARCHAR NOT NULL, etag VARCHAR NOT NULL,
    size BIGINT NOT NULL, last_modified TIMESTAMP WITH TIME ZONE, _dlt_load_id VARCHAR NOT NULL)"""
# DuckDB pays per Arrow batch it appends: a stream of tiny batches (a first load of 20,000
# three-row CSV objects, one batch each) used up the whole memory limit when insertion order is
# kept (merge), and 100,000 such batches took 2.4x as long without it. Smaller batches are
# gathered until they fill a DuckDB vector.
_MIN_BATCH_ROWS = 2048
_MAX_GATHERED_BYTES = 16 * 1024 * 1024
# DuckDB's buffer pool would otherwise grow towards 80% of RAM on a large load; data beyond
# this spills to the database file / temp folder, so memory stays flat whatever the input.
# 128 MB: a 605 MB CSV object peaks at 421 MB of process RSS, a 505 MB JSONL one at 426 MB,
# with a byte range downloading ahead of the parser (200 MB: 487-492 MB; 100 MB: 387-390 MB),
# at the same speed (2M-row objects, each format, within the noise).
DEFAULT_MEMORY_LIMIT = "128MB"
MEMORY_LIMIT_ENV = "KINGEST_DUCKDB_MEMORY_LIMIT"

_DISPOSITION = {
    Strategy.REPLACE: "replace",
    Strategy.APPEND: "append",
    Strategy.MERGE: "merge",
    Strategy.DELETE_INSERT: "merge",
    Strategy.SCD2: "merge",
}

_BOOKKEEPING_DDL = (
    """CREATE TABLE IF NOT EXISTS {s}."_dlt_loads" (
        load_id VARCHAR NOT NULL, schema_name VARCHAR, status BIGINT NOT NULL,
        inserted_at TIMESTAMP WITH TIME ZONE NOT NULL, schema_version_hash VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS {s}."_dlt_version" (
        version BIGINT NOT NULL, engine_version BIGINT NOT NULL,
        inserted_at TIMESTAMP WITH TIME ZONE NOT NULL, schema_name VARCHAR NOT NULL,
        version_hash VARCHAR NOT NULL, schema VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {s}."_dlt_pipeline_state" (
        version BIGINT NOT NULL, engine_version BIGINT NOT NULL, pipeline_name VARCHAR NOT NULL,
        state VARCHAR NOT NULL, created_at TIMESTAMP WITH TIME ZONE NOT NULL,
        version_hash VARCHAR, _dlt_load_id VARCHAR NOT NULL, _dlt_id VARCHAR NOT NULL)""",
)


def quote(identifier: str) -> str:
    """A DuckDB identifier in double quotes (inner quotes doubled)."""
    return '"' + identifier.replace('"', '""') + '"'


def _gathered(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``reader`` with runs of small batches combined (large batches pass as they are)."""

    def batches() -> Iterator[pa.RecordBatch]:
        pending: list[pa.RecordBatch] = []
        rows = size = 0
        for batch in reader:
            if batch.num_rows >= _MIN_BATCH_ROWS:
                if pending:
                    yield from _combined(pending)
                    pending, rows, size = [], 0, 0
                yield batch
                continue
            pending.append(batch)
            rows, size = rows + batch.num_rows, size + batch.nbytes
            if rows >= _MIN_BATCH_ROWS or size >= _MAX_GATHERED_BYTES:
                yield from _combined(pending)
                pending, rows, size = [], 0, 0
        if pending:
            yield from _combined(pending)

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _with_row_ids(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``reader`` with a fresh ``_dlt_id`` on every row, as dlt gives each row it loads (a
    ``_dlt_id`` the source already had is replaced: ids are unique per destination row).
    The column holds the ids' random bytes; :meth:`DuckDBDestination._select` makes them text.
    """
    fields = [f for f in reader.schema if f.name != ROW_ID_COLUMN]
    id_type = pa.binary(dlt_files.DLT_ID_BYTES)
    schema = pa.schema([*fields, pa.field(ROW_ID_COLUMN, id_type, nullable=False)])
    names = [f.name for f in fields]

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            columns = [*batch.select(names).columns, dlt_files.dlt_id_bytes(batch.num_rows)]
            yield pa.RecordBatch.from_arrays(columns, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _combined(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """One batch of all of ``batches`` (none if they hold no rows)."""
    return pa.Table.from_batches(batches).combine_chunks().to_batches()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_NAME = re.compile(r"^[^\x00-\x1f./]+$")


class DuckDBDestination(Destination):
    """A table in a DuckDB file: ``--dest-table schema.table`` or ``table`` (schema main)."""

    def __init__(self, uri: DuckDBUri, table: str, options: LoadOptions) -> None:
        parts = table.split(".")
        if len(parts) > 2 or not all(p and _NAME.match(p) for p in parts):
            raise UsageError(
                f"--dest-table {table!r}: expected 'schema.table' or 'table' for DuckDB"
            )
        self.path = uri.path
        self.schema = parts[0] if len(parts) == 2 else "main"
        self.table = parts[-1]
        self.dest_table = table
        self.options = options

    @classmethod
    def from_uri(cls, uri: ParsedUri, table: str, options: LoadOptions) -> Self:
        """Validate the ``duckdb://`` URI and ``--dest-table`` (no I/O)."""
        return cls(DuckDBUri.from_parsed(uri), table, options)

    @property
    def qualified(self) -> str:
        """The quoted ``"schema"."table"``."""
        return f"{quote(self.schema)}.{quote(self.table)}"

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if not self.path.parent.is_dir():
            raise DestinationError(f"{self.path}: folder {self.path.parent} does not exist")
        config: dict[str, str | bool] = {
            "memory_limit": os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT),
            # Rows in file order cost DuckDB a single-threaded insert; a table has no order
            # anyway. Only merge keeps it: its "last row per key wins" reads the staged order.
            "preserve_insertion_order": self.options.strategy in (Strategy.MERGE, Strategy.SCD2),
        }
        try:
            return duckdb.connect(str(self.path), config=config)
        except duckdb.Error as exc:
            raise DestinationError(f"cannot open DuckDB database {self.path}: {exc}") from None

    def stored_state(self) -> dict[str, Any] | None:
        """The newest committed pipeline state of this table (None without one, or when the
        table itself is gone: after a user drops it, a cursor would skip rows it no longer has)."""
        if not self.path.is_file():
            return None
        try:
            with duckdb.connect(str(self.path), read_only=True) as con:
                if not self._table_exists(con):
                    return None
                return self._committed_state(con)
        except duckdb.Error as exc:
            raise DestinationError(f"cannot read DuckDB database {self.path}: {exc}") from None

    def _committed_state(self, con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
        """The state of this pipeline's newest load that has its ``_dlt_loads`` entry."""
        if not (
            self._table_exists(con, "_dlt_pipeline_state") and self._table_exists(con, "_dlt_loads")
        ):
            return None
        schema = quote(self.schema)
        row = con.execute(
            f"SELECT s.state FROM {schema}._dlt_pipeline_state s JOIN {schema}._dlt_loads l "
            "ON l.load_id = s._dlt_load_id WHERE s.pipeline_name = ? AND l.status = 0 "
            "ORDER BY l.inserted_at DESC, s.version DESC LIMIT 1",
            [dlt_files.pipeline_name_for(self.dest_table)],
        ).fetchone()
        return dlt_state.decompress(row[0]) if row else None

    def loaded_files(self) -> LoadedFiles | None:
        """The file versions already in the table, for an append run (else None).

        Only a table that still exists counts: after a user drops it, everything loads again.
        """
        if self.options.strategy is not Strategy.APPEND or self.options.full_refresh:
            return None
        if not self.path.is_file():
            return {}
        try:
            with duckdb.connect(str(self.path), read_only=True) as con:
                if not (self._table_exists(con) and self._table_exists(con, LOADED_FILES_TABLE)):
                    return {}
                rows = con.execute(
                    f"SELECT file_url, etag, size, last_modified FROM "
                    f"{quote(self.schema)}.{quote(LOADED_FILES_TABLE)} WHERE table_name = ?",
                    [self.table],
                ).fetchall()
        except duckdb.Error as exc:
            raise DestinationError(f"cannot read DuckDB database {self.path}: {exc}") from None
        return {url: SourceFile(url, etag, size, modified) for url, etag, size, modified in rows}

    def existing_columns(self, stream_name: str) -> dict[str, str] | None:
        """The table's columns as dlt types (None if there is no such table yet)."""
        if not self.path.is_file():
            return None
        try:
            with duckdb.connect(str(self.path), read_only=True) as con:
                if not self._table_exists(con):
                    return None
                schema = con.sql(f"SELECT * FROM {self.qualified} LIMIT 0").to_arrow_table().schema
        except duckdb.Error as exc:
            raise DestinationError(f"cannot read DuckDB database {self.path}: {exc}") from None
        return {f.name: dlt_files.dlt_data_type(f) for f in schema}

    def load(self, stream: SourceStream, load_id: str) -> LoadSummary:
        """Load ``stream`` into the table in one transaction; raise DestinationError on failure."""
        table = f"{self.schema}.{self.table}"
        if stream.files == [] and not self.path.exists():
            # Nothing new and nowhere to record a load: the path stays as it was (absent).
            return LoadSummary(rows=0, destination_table=table, committed=False)
        existed = self.path.exists()
        con = self._connect()
        try:
            con.begin()
            if stream.files == [] and not self._table_exists(con):
                con.rollback()
                con.close()
                return LoadSummary(rows=0, destination_table=table, committed=False)
            rows = self._load(con, stream, load_id)
            con.commit()
        except BaseException as exc:
            # An aborted transaction cannot be rolled back again; nothing was committed anyway.
            with contextlib.suppress(duckdb.Error):
                con.rollback()
            con.close()
            if not existed:
                for leftover in (self.path, Path(f"{self.path}.wal")):
                    leftover.unlink(missing_ok=True)
            if isinstance(exc, duckdb.Error):
                raise DestinationError(
                    f"DuckDB {self.path}, table {self.schema}.{self.table}: {exc}"
                ) from None
            raise
        con.close()
        return LoadSummary(rows=rows, destination_table=table, tables={table: rows})

    # -- the data ------------------------------------------------------------------------

    def _select(self, schema: pa.Schema, load_id: str, view: str = STREAM_VIEW) -> str:
        """SELECT over the stream (or ``view`` of its shape): JSON columns serialized,
        interval filter, load id added."""
        replaces = []
        for hint in self.options.columns:
            if not hint.is_json or hint.name not in schema.names:
                continue
            data_type = schema.field(hint.name).type
            expression = (
                f"{quote(hint.name)}::JSON"
                if pa.types.is_string(data_type)
                else f"to_json({quote(hint.name)})::JSON"
            )
            replaces.append(f"{expression} AS {quote(hint.name)}")
        star = f"* REPLACE ({', '.join(replaces)})" if replaces else "*"
        excluded = [quote(c) for c in (LOAD_ID_COLUMN, ROW_ID_COLUMN) if c in schema.names]
        if excluded:
            star += f" EXCLUDE ({', '.join(excluded)})"
        conditions = []
        key = self.options.incremental_key
        if key is not None and (self.options.interval_start or self.options.interval_end):
            if key not in schema.names:
                raise UsageError(
                    f"--incremental-key {key!r} is not a column of the source "
                    f"(columns: {', '.join(schema.names)})"
                )
            if self.options.interval_start:
                conditions.append(f"{quote(key)} >= {_literal(self.options.interval_start)}")
            if self.options.interval_end:
                conditions.append(f"{quote(key)} <= {_literal(self.options.interval_end)}")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return (
            f"SELECT {star}, {_literal(load_id)} AS {LOAD_ID_COLUMN}, "
            f"{dlt_files.dlt_id_sql(ROW_ID_COLUMN)} AS {ROW_ID_COLUMN} "
            f"FROM {view}{where}"
        )

    def _create_table(self, con: duckdb.DuckDBPyConnection, template: str, select: str) -> int:
        """(Re)create the table with the columns ``template`` selects (read from nothing) and
        fill it from ``select``; the rows inserted.

        ``_dlt_id`` is stored uncompressed: its values are random, and DuckDB's default string
        compression (dictionary + FSST) tries hard and gains nothing on them (2M rows: 1.5
        CPU-seconds, 3x the rest of the column's insert; the file 9% larger without it).
        """
        con.execute(
            f"CREATE OR REPLACE TABLE {self.qualified} AS "
            f"SELECT * EXCLUDE ({ROW_ID_COLUMN}) FROM ({template}) LIMIT 0"
        )
        con.execute(
            f"ALTER TABLE {self.qualified} ADD COLUMN {ROW_ID_COLUMN} VARCHAR "
            "USING COMPRESSION uncompressed"
        )
        result = con.execute(f"INSERT INTO {self.qualified} BY NAME {select}")
        return int(result.fetchone()[0])  # type: ignore[index]

    def _table_exists(self, con: duckdb.DuckDBPyConnection, name: str | None = None) -> bool:
        found = con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [self.schema, name or self.table],
        ).fetchall()  # all of it: a half-read result blocks the connection's next query
        return bool(found[0][0])

    def _columns(self, con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
        return {row[0]: row[1] for row in con.execute(f"DESCRIBE {table}").fetchall()}

    def _evolve(self, con: duckdb.DuckDBPyConnection) -> None:
        """Add the staged columns the table lacks (nulls in the rows already there)."""
        existing = self._columns(con, self.qualified)
        for name, data_type in self._columns(con, STAGE_TABLE).items():
            if name not in existing:
                con.execute(f"ALTER TABLE {self.qualified} ADD COLUMN {quote(name)} {data_type}")

    def _check_keys(self, con: duckdb.DuckDBPyConnection, keys: tuple[str, ...], flag: str) -> None:
        staged = self._columns(con, STAGE_TABLE)
        missing = [k for k in keys if k not in staged]
        if missing:
            raise UsageError(
                f"{flag} {', '.join(missing)}: not a column of the source "
                f"(columns: {', '.join(n for n in staged if n != LOAD_ID_COLUMN)})"
            )

    def _load(self, con: duckdb.DuckDBPyConnection, stream: SourceStream, load_id: str) -> int:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
        for ddl in _BOOKKEEPING_DDL:
            con.execute(ddl.format(s=quote(self.schema)))
        if stream.files == []:
            # Nothing new to read (all loaded already, or none modified in the interval): the
            # table stays as it is and the run commits its bookkeeping only.
            self._bookkeep(con, load_id, stream.cursor)
            return 0
        if stream.files is not None:
            self._record_files(con, stream.files, load_id)
        reader = _with_row_ids(_gathered(stream.reader))
        con.register(STREAM_VIEW, reader)
        select = self._select(reader.schema, load_id)
        strategy = self.options.strategy
        exists = self._table_exists(con)
        if strategy is Strategy.SCD2:
            rows = self._load_scd2(con, select, load_id, exists and not self.options.full_refresh)
        elif strategy is Strategy.REPLACE or self.options.full_refresh or not exists:
            # The same SELECT over an empty relation of the stream's shape names the columns.
            con.register(_EMPTY_VIEW, reader.schema.empty_table())
            template = self._select(reader.schema, load_id, _EMPTY_VIEW)
            if strategy is Strategy.MERGE:
                # Even into an empty table, merge keeps one row per primary key (the last).
                con.execute(f"CREATE TEMP TABLE {STAGE_TABLE} AS {select}")
                self._check_keys(con, self.options.primary_key, "--primary-key")
                select = template = self._deduplicated()
            rows = self._create_table(con, template, select)
            con.unregister(_EMPTY_VIEW)
        else:
            con.execute(f"CREATE TEMP TABLE {STAGE_TABLE} AS {select}")
            self._evolve(con)
            if strategy is Strategy.APPEND:
                result = con.execute(
                    f"INSERT INTO {self.qualified} BY NAME SELECT * FROM {STAGE_TABLE}"
                )
            elif strategy is Strategy.MERGE:
                self._check_keys(con, self.options.primary_key, "--primary-key")
                keys = ", ".join(quote(k) for k in self.options.primary_key)
                con.execute(
                    f"DELETE FROM {self.qualified} WHERE ({keys}) IN "
                    f"(SELECT ({keys}) FROM {STAGE_TABLE})"
                )
                result = con.execute(f"INSERT INTO {self.qualified} BY NAME {self._deduplicated()}")
            else:
                delete_keys = (
                    (self.options.incremental_key,)
                    if self.options.incremental_key
                    else self.options.primary_key
                )
                self._check_keys(con, delete_keys, "--incremental-key")  # type: ignore[arg-type]
                keys = ", ".join(quote(k) for k in delete_keys if k)
                con.execute(
                    f"DELETE FROM {self.qualified} WHERE ({keys}) IN "
                    f"(SELECT DISTINCT ({keys}) FROM {STAGE_TABLE})"
                )
                result = con.execute(
                    f"INSERT INTO {self.qualified} BY NAME SELECT * FROM {STAGE_TABLE}"
                )
            rows = int(result.fetchone()[0])  # type: ignore[index]
        con.unregister(STREAM_VIEW)
        self._bookkeep(con, load_id, stream.cursor)
        return rows

    def _record_files(
        self, con: duckdb.DuckDBPyConnection, files: list[SourceFile], load_id: str
    ) -> None:
        """Record the file versions this load reads, in the load's transaction.

        Replace (and a full refresh, and a table created now) start the record over; other
        strategies update the entries of the files they load. An append refuses to load a
        version another run recorded after this run asked (it would load it twice).
        """
        ledger = f"{quote(self.schema)}.{quote(LOADED_FILES_TABLE)}"
        con.execute(_LOADED_FILES_DDL.format(s=quote(self.schema)))
        new = pa.table(
            {
                "file_url": pa.array([f.url for f in files], pa.string()),
                "etag": pa.array([f.etag for f in files], pa.string()),
                "size": pa.array([f.size for f in files], pa.int64()),
                "last_modified": pa.array(
                    [f.last_modified for f in files], pa.timestamp("us", tz="UTC")
                ),
            }
        )
        con.register(_NEW_FILES_VIEW, new)
        starts_over = (
            self.options.strategy is Strategy.REPLACE
            or self.options.full_refresh
            or not self._table_exists(con)
        )
        if starts_over:
            con.execute(f"DELETE FROM {ledger} WHERE table_name = ?", [self.table])
        elif self.options.strategy is Strategy.APPEND:
            clash = con.execute(
                f"SELECT n.file_url FROM {_NEW_FILES_VIEW} n JOIN {ledger} l "
                "ON l.table_name = ? AND l.file_url = n.file_url AND l.etag = n.etag "
                "AND l.size = n.size LIMIT 1",
                [self.table],
            ).fetchone()
            if clash:
                raise DestinationError(
                    f"{clash[0]} was loaded into {self.schema}.{self.table} by another run "
                    "while this one was reading; nothing was loaded, run again"
                )
        con.execute(
            f"DELETE FROM {ledger} WHERE table_name = ? AND file_url IN "
            f"(SELECT file_url FROM {_NEW_FILES_VIEW})",
            [self.table],
        )
        con.execute(
            f"INSERT INTO {ledger} SELECT ?, file_url, etag, size, last_modified, ? "
            f"FROM {_NEW_FILES_VIEW}",
            [self.table, load_id],
        )
        con.unregister(_NEW_FILES_VIEW)

    def _load_scd2(
        self, con: duckdb.DuckDBPyConnection, select: str, load_id: str, exists: bool
    ) -> int:
        """Load the stream as new row versions (:mod:`kingest.runner.scd2`)."""
        keys = self.options.primary_key
        con.execute(f"CREATE TEMP TABLE {STAGE_TABLE} AS {select}")
        self._check_keys(con, keys, "--primary-key")
        current = f"{STAGE_TABLE}_current"
        con.execute(
            f"CREATE TEMP TABLE {current} AS "
            + scd2.deduplicated(STAGE_TABLE, keys, self.options.incremental_key)
        )
        valid_from = datetime.fromtimestamp(float(load_id), UTC)
        if not exists:
            versions, params = scd2.versions(f"SELECT * FROM {current}", valid_from)
            result = con.execute(f"CREATE OR REPLACE TABLE {self.qualified} AS {versions}", params)
            return int(result.fetchone()[0])  # type: ignore[index]
        compared = [
            c for c in self._columns(con, current) if c not in keys and not c.startswith("_dlt_")
        ]
        self._evolve(con)
        return scd2.merge(
            con,
            table=self.qualified,
            stage=current,
            keys=keys,
            compared=compared,
            valid_from=valid_from,
            snapshot=not self.options.incremental_key,
        )

    def _deduplicated(self) -> str:
        keys = ", ".join(quote(k) for k in self.options.primary_key)
        return (
            f"SELECT * FROM {STAGE_TABLE} "
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY rowid DESC) = 1"
        )

    # -- bookkeeping ---------------------------------------------------------------------

    def _bookkeep(
        self, con: duckdb.DuckDBPyConnection, load_id: str, cursor: CursorTracker | None
    ) -> None:
        schema_ident = quote(self.schema)
        schema_name = dlt_files.schema_name_for(self.dest_table)
        pipeline_name = dlt_files.pipeline_name_for(self.dest_table)
        now = datetime.now(UTC)
        arrow_schema = con.sql(f"SELECT * FROM {self.qualified} LIMIT 0").to_arrow_table().schema
        table = dlt_files.table_schema(
            self.table, arrow_schema, _DISPOSITION[self.options.strategy], "parquet"
        )
        previous_row = con.execute(
            f"SELECT schema FROM {schema_ident}._dlt_version WHERE schema_name = ? "
            "ORDER BY inserted_at DESC, version DESC LIMIT 1",
            [schema_name],
        ).fetchone()
        previous: dict[str, Any] | None = json.loads(previous_row[0]) if previous_row else None
        stored = dlt_files.stored_schema(schema_name, [table], previous)
        if previous is None or previous.get("version_hash") != stored["version_hash"]:
            con.execute(
                f"INSERT INTO {schema_ident}._dlt_version VALUES (?, ?, ?, ?, ?, ?)",
                [
                    stored["version"],
                    stored["engine_version"],
                    now,
                    schema_name,
                    stored["version_hash"],
                    json.dumps(stored, separators=(",", ":")),
                ],
            )
        state = dlt_state.next_state(
            None if self.options.full_refresh else self._committed_state(con),
            pipeline_name=pipeline_name,
            schema_name=schema_name,
            dataset_name=self.schema,
            destination_type="dlt.destinations.duckdb",
            cursor=cursor.update() if cursor is not None else None,
        )
        con.execute(
            f"INSERT INTO {schema_ident}._dlt_pipeline_state VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                state["_state_version"],
                state["_state_engine_version"],
                pipeline_name,
                dlt_state.compress(state),
                now,
                state["_version_hash"],
                load_id,
                base64.b64encode(os.urandom(10)).decode("ascii").rstrip("="),
            ],
        )
        # Written last, as dlt does: a load is complete once its _dlt_loads row exists.
        con.execute(
            f"INSERT INTO {schema_ident}._dlt_loads VALUES (?, ?, 0, ?, ?)",
            [load_id, schema_name, now, stored["version_hash"]],
        )
