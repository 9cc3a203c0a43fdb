"""DuckDB tables as a source: a read-only connection streaming Arrow record batches.

The database is opened with ``read_only=True``: DuckDB then takes a shared lock and never
writes to the file (no WAL, no checkpoint), so a source database is neither modified nor
locked for writing by a run; other readers may run at the same time.

``--source-table`` is ``table`` (schema ``main``) or ``schema.table``. With
``--incremental-key``, ``--interval-start`` / ``--interval-end`` select
``start <= key < end`` (dlt's incremental: the end is open).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class DuckDBTable:
    """``--source-table`` for DuckDB: ``table`` (in schema ``main``) or ``schema.table``."""

    schema: str
    name: str

    @classmethod
    def parse(cls, source_table: str) -> DuckDBTable:
        """Split ``schema.table``; raises :class:`UsageError` for anything else."""
        parts = source_table.split(".")
        if len(parts) == 1 and parts[0]:
            return cls(schema="main", name=parts[0])
        if len(parts) == 2 and all(parts):
            return cls(schema=parts[0], name=parts[1])
        raise UsageError(f"--source-table {source_table!r}: expected 'table' or 'schema.table'")

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


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
                raise DataError(f"reading {self.table} from {str(self.path)!r}: {exc}") from None
            stats.add(rows=batch.num_rows)
            yield batch

    def _reader(self, connection: duckdb.DuckDBPyConnection) -> pa.RecordBatchReader:
        # DuckDB resolves identifiers case-insensitively; so does this lookup.
        available = {
            name
            for (name,) in connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE lower(table_schema) = lower(?) AND lower(table_name) = lower(?)",
                [self.table.schema, self.table.name],
            ).fetchall()
        }
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
        lowered = {name.lower() for name in available}
        if self.incremental_key and self.incremental_key.lower() not in lowered:
            raise DataError(
                f"--incremental-key: column {self.incremental_key!r} not found in "
                f"table '{self.table}' (columns: {', '.join(sorted(available))})"
            )
        connection.execute(f"SET memory_limit = '{scan_memory_limit_mb(len(available))}MB'")
        batch_rows = self.batch_rows or batch_rows_for(len(available))
        sql = f"SELECT * FROM {_quote(self.table.schema)}.{_quote(self.table.name)}"
        conditions: list[str] = []
        params: list[str] = []
        if self.incremental_key and self.interval_start is not None:
            conditions.append(f"{_quote(self.incremental_key)} >= ?")
            params.append(self.interval_start)
        if self.incremental_key and self.interval_end is not None:
            conditions.append(f"{_quote(self.incremental_key)} < ?")
            params.append(self.interval_end)
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        try:
            return connection.sql(sql, params=params).to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            raise DataError(f"reading '{self.table}' from {str(self.path)!r}: {exc}") from None
