"""DuckDB tables as a source: a read-only connection streaming Arrow record batches.

The database is opened with ``read_only=True``: DuckDB then takes a shared lock and never
writes to the file (no WAL, no checkpoint), so a source database is neither modified nor
locked for writing by a run; other readers may run at the same time.

``--source-table`` is ``table`` (schema ``main``), ``schema.table``, or ``query:<SQL>`` (any
SELECT DuckDB runs; ``:interval_start`` / ``:interval_end`` in it are bound to the cursor or
the interval, as ingestr binds them). With ``--incremental-key``, ``--interval-start`` /
``--interval-end`` select ``start <= key < end`` (dlt's incremental: the end is open), and a
stored cursor selects ``key >= last value`` (:mod:`kingest.runner.cursor`). ``--sql-limit``
reads at most that many rows (in incremental-key order when there is one);
``--sql-exclude-columns`` leaves columns out (names the source lacks are ignored, as ingestr
ignores them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from kingest.runner.errors import DataError, UsageError
from kingest.runner.interfaces import LoadedFiles, LoadOptions, ReadStats, Source, SourceStream
from kingest.runner.uri import DuckDBUri, ParsedUri

# A multiple of DuckDB's vector size (2048): batches come out of the engine without re-slicing.
# It is also DuckDB's row group size, so one batch is one row group of a narrow table.
DEFAULT_BATCH_ROWS = 2048 * 60
_NARROW_COLUMNS = 16


def batch_rows_for(columns: int) -> int:
    """Rows per batch: DuckDB's row group for up to 16 columns, fewer for wider tables.

    Keeps one batch at roughly the same number of values (about two million) however
    wide the table, so memory follows the batch size, not the table's width.
    """
    if columns <= _NARROW_COLUMNS:
        return DEFAULT_BATCH_ROWS
    rows = DEFAULT_BATCH_ROWS * _NARROW_COLUMNS // columns
    return max(2048, rows // 2048 * 2048)


def scan_memory_limit_mb(columns: int) -> int:
    """DuckDB's buffer-pool limit for a scan of a table with ``columns`` columns.

    Without a limit DuckDB keeps every block it has read cached (up to 80% of RAM), so a
    scan's memory grows with the table. A scan pins about a row group's segments per
    column; measured: 300 string columns need 256 MB, a few columns a few MB.
    """
    return 32 + columns


QUERY_PREFIX = "query:"
# ingestr's bind parameters in a query: source table (not DuckDB's `::` casts).
_QUERY_PARAMETER = re.compile(r"(?<![:\w]):interval_(start|end)\b")


@dataclass(frozen=True)
class DuckDBTable:
    """``--source-table`` for DuckDB: ``table`` (in schema ``main``), ``schema.table``, or
    ``query:<SQL>`` (then ``query`` holds the SQL and the name is ingestr's ``custom``)."""

    schema: str
    name: str
    query: str | None = None

    @classmethod
    def parse(cls, source_table: str) -> DuckDBTable:
        """Split ``schema.table``; raises :class:`UsageError` for anything else."""
        if source_table.startswith(QUERY_PREFIX):
            sql = source_table[len(QUERY_PREFIX) :].strip().rstrip(";").strip()
            if not sql:
                raise UsageError("--source-table 'query:': no SQL after 'query:'")
            return cls(schema="", name="custom", query=sql)
        parts = source_table.split(".")
        if len(parts) == 1 and parts[0]:
            return cls(schema="main", name=parts[0])
        if len(parts) == 2 and all(parts):
            return cls(schema=parts[0], name=parts[1])
        raise UsageError(f"--source-table {source_table!r}: expected 'table' or 'schema.table'")

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"

    def described(self) -> str:
        """How messages name it: ``table 'public.users'``, or ``the query:``."""
        return "the query: source table" if self.query else f"table '{self}'"

    def relation(self) -> str:
        """What a SELECT reads from: the quoted table, or the query as a subquery."""
        if self.query is not None:
            return f"({_QUERY_PARAMETER.sub(lambda m: f'$interval_{m[1]}', self.query)}) AS q"
        return f"{_quote(self.schema)}.{_quote(self.name)}"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class DuckDBSource(Source):
    """One table of one DuckDB file, read in Arrow batches of ``batch_rows`` rows.

    ``batch_rows`` is ``--page-size``; without it, :func:`batch_rows_for` the table's width.
    """

    path: Path
    table: DuckDBTable
    incremental_key: str | None = None
    interval_start: str | None = None
    interval_end: str | None = None
    batch_rows: int | None = None
    cursor_start: Any = None
    """The stored cursor's last value: only rows with ``incremental_key >= cursor_start``."""
    limit: int | None = None
    exclude: tuple[str, ...] = ()

    @property
    def cursor_resource(self) -> str:  # type: ignore[override]
        """ingestr's resource name: the table's name, ``custom`` for a query."""
        return self.table.name

    def resumed_from(self, value: Any) -> DuckDBSource:
        """This source reading from the stored cursor on."""
        return replace(self, cursor_start=value)

    @classmethod
    def from_uri(cls, uri: ParsedUri, table: str, options: LoadOptions) -> DuckDBSource:
        """Validate ``duckdb:///file`` and ``--source-table``; no I/O yet."""
        parsed = DuckDBUri.from_parsed(uri)
        if (options.interval_start or options.interval_end) and not options.incremental_key:
            raise UsageError("--interval-start/--interval-end need --incremental-key")
        return cls(
            path=parsed.path,
            table=DuckDBTable.parse(table),
            incremental_key=options.incremental_key,
            interval_start=options.interval_start,
            interval_end=options.interval_end,
            batch_rows=options.page_size,
            limit=options.sql_limit,
            exclude=options.sql_exclude_columns,
        )

    def open(self, loaded: LoadedFiles | None = None) -> SourceStream:
        """Open the file read-only and start streaming the table.

        Raises :class:`DataError` naming the file, table or column that is missing.
        """
        if not self.path.is_file():
            raise DataError(f"DuckDB source file {str(self.path)!r} does not exist")
        try:
            connection = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as exc:
            raise DataError(
                f"cannot open DuckDB file {str(self.path)!r} read-only: {exc}"
            ) from None
        try:
            reader = self._reader(connection)
        except BaseException:
            connection.close()
            raise
        stats = ReadStats()
        counted = pa.RecordBatchReader.from_batches(reader.schema, self._count(reader, stats))
        return SourceStream(
            reader=counted, name=self.table.name, stats=stats, on_close=connection.close
        )

    def _count(self, reader: pa.RecordBatchReader, stats: ReadStats) -> Iterator[pa.RecordBatch]:
        stats.add(files=1, bytes=self.path.stat().st_size)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowException, duckdb.Error) as exc:
                raise DataError(
                    f"reading {self.table.described()} from {str(self.path)!r}: {exc}"
                ) from None
            stats.add(rows=batch.num_rows)
            yield batch

    def _columns(self, connection: duckdb.DuckDBPyConnection) -> list[str]:
        """The source's column names; raises :class:`DataError` if the table is missing."""
        if self.table.query is not None:
            try:
                return connection.sql(
                    f"SELECT * FROM {self.table.relation()} LIMIT 0",
                    params=self._query_parameters(),
                ).columns
            except duckdb.Error as exc:
                raise DataError(f"--source-table query: {exc}") from None
        # DuckDB resolves identifiers case-insensitively; so does this lookup.
        available = [
            name
            for (name,) in connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE lower(table_schema) = lower(?) AND lower(table_name) = lower(?) "
                "ORDER BY ordinal_position",
                [self.table.schema, self.table.name],
            ).fetchall()
        ]
        if not available:
            tables = [
                f"{s}.{t}"
                for s, t in connection.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "ORDER BY ALL LIMIT 20"
                ).fetchall()
            ]
            raise DataError(
                f"--source-table: table '{self.table}' not found in {str(self.path)!r}"
                + (f" (it has: {', '.join(tables)})" if tables else " (it has no tables)")
            )
        return available

    def _query_parameters(self) -> dict[str, Any]:
        """Values of ingestr's ``:interval_start`` / ``:interval_end`` used in the query: the
        cursor (else --interval-start, else the earliest time) and --interval-end (else the
        latest time)."""
        if self.table.query is None:
            return {}
        used = {f"interval_{m[1]}" for m in _QUERY_PARAMETER.finditer(self.table.query)}
        start = self.cursor_start if self.cursor_start is not None else self.interval_start
        values = {
            "interval_start": datetime.min if start is None else start,
            "interval_end": datetime.max if self.interval_end is None else self.interval_end,
        }
        return {name: values[name] for name in used}

    def _reader(self, connection: duckdb.DuckDBPyConnection) -> pa.RecordBatchReader:
        columns = self._columns(connection)
        lowered = {name.lower() for name in columns}
        key = self.incremental_key
        if key and key.lower() not in lowered:
            raise DataError(
                f"--incremental-key: column {key!r} not found in "
                f"{self.table.described()} (columns: {', '.join(sorted(columns))})"
            )
        excluded = [c for c in columns if c.lower() in {e.lower() for e in self.exclude}]
        if key and key.lower() in {c.lower() for c in excluded}:
            raise UsageError(f"--sql-exclude-columns leaves out the --incremental-key {key!r}")
        if len(excluded) == len(columns):
            raise UsageError("--sql-exclude-columns leaves out every column of the source")
        width = len(columns) - len(excluded)
        connection.execute(f"SET memory_limit = '{scan_memory_limit_mb(width)}MB'")
        batch_rows = self.batch_rows or batch_rows_for(width)
        sql, params = self._select(excluded)
        try:
            return connection.sql(sql, params=params).to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            raise DataError(
                f"reading {self.table.described()} from {str(self.path)!r}: {exc}"
            ) from None

    def _select(self, excluded: list[str]) -> tuple[str, dict[str, Any]]:
        """The SELECT this source runs, and its named parameters."""
        star = "*"
        if excluded:
            star += f" EXCLUDE ({', '.join(_quote(c) for c in excluded)})"
        sql = f"SELECT {star} FROM {self.table.relation()}"
        params = self._query_parameters()
        conditions: list[str] = []
        key = _quote(self.incremental_key) if self.incremental_key else None
        for name, value, operator in (
            ("kingest_cursor", self.cursor_start, ">="),
            ("kingest_start", self.interval_start, ">="),
            ("kingest_end", self.interval_end, "<="),
        ):
            if key and value is not None:
                conditions.append(f"{key} {operator} ${name}")
                params[name] = value
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        if self.limit is not None:
            sql += f" ORDER BY {key}" if key else ""
            sql += f" LIMIT {int(self.limit)}"
        return sql, params
