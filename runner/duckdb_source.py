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
from kingest.runner.interfaces import LoadOptions, ReadStats, Source, SourceStream
from kingest.runner.uri import DuckDBUri, ParsedUri

# A multiple of DuckDB's vector size (2048): batches come out of the engine without re-slicing.
DEFAULT_BATCH_ROWS = 2048 * 60


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
    """One table of one DuckDB file, read in Arrow batches of ``batch_rows`` rows."""

    path: Path
    table: DuckDBTable
    incremental_key: str | None = None
    interval_start: str | None = None
    interval_end: str | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS

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
            batch_rows=options.page_size or DEFAULT_BATCH_ROWS,
        )

    def open(self) -> SourceStream:
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
        available = {
            name
            for (name,) in connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
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
        if self.incremental_key and self.incremental_key not in available:
            raise DataError(
                f"--incremental-key: column {self.incremental_key!r} not found in "
                f"table '{self.table}' (columns: {', '.join(sorted(available))})"
            )
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
            return connection.sql(sql, params=params).to_arrow_reader(self.batch_rows)
        except duckdb.Error as exc:
            raise DataError(f"reading '{self.table}' from {str(self.path)!r}: {exc}") from None
