"""DuckDB tables as a source: a read-only connection streaming Arrow record batches.

The database is opened with ``read_only=True``: DuckDB then takes a shared lock and never
writes to the file (no WAL, no checkpoint), so a source database is neither modified nor
locked for writing by a run; other readers may run at the same time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

# A multiple of DuckDB's vector size (2048): batches come out of the engine without re-slicing.
DEFAULT_BATCH_ROWS = 2048 * 60


class DuckDBSourceError(Exception):
    """The source database or table cannot be read; ``reason`` is the result's CamelCase word."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DuckDBTable:
    """``--source-table`` for DuckDB: ``table`` (in schema ``main``) or ``schema.table``."""

    schema: str
    name: str

    @classmethod
    def parse(cls, source_table: str) -> DuckDBTable:
        """Split ``schema.table``; raises :class:`DuckDBSourceError` (UsageError) otherwise."""
        parts = source_table.split(".")
        if len(parts) == 1 and parts[0]:
            return cls(schema="main", name=parts[0])
        if len(parts) == 2 and all(parts):
            return cls(schema=parts[0], name=parts[1])
        raise DuckDBSourceError(
            f"--source-table {source_table!r}: expected 'table' or 'schema.table'", "UsageError"
        )


def database_path(uri: str) -> Path:
    """The file of a ``duckdb:///relative.db`` or ``duckdb:////absolute.db`` URI."""
    prefix = "duckdb:///"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        raise DuckDBSourceError(
            f"source URI must look like duckdb:///file.db or duckdb:////abs/file.db, got {uri!r}",
            "InvalidUri",
        )
    return Path(uri[len(prefix) :].split("?", 1)[0])


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class DuckDBSource:
    """One table of one DuckDB file, read in Arrow batches of ``batch_rows`` rows."""

    path: Path
    table: DuckDBTable
    columns: tuple[str, ...] = ()
    incremental_key: str | None = None
    interval_start: str | None = None
    interval_end: str | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS

    @contextmanager
    def open(self) -> Iterator[pa.RecordBatchReader]:
        """Stream the table; the connection stays open exactly as long as the reader is used.

        Raises :class:`DuckDBSourceError` naming the file, table or column that is missing.
        """
        if not self.path.is_file():
            raise DuckDBSourceError(
                f"DuckDB source file {str(self.path)!r} does not exist", "DataError"
            )
        try:
            connection = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as exc:
            raise DuckDBSourceError(
                f"cannot open DuckDB file {str(self.path)!r} read-only: {exc}", "DataError"
            ) from None
        try:
            yield self._reader(connection)
        finally:
            connection.close()

    def _reader(self, connection: duckdb.DuckDBPyConnection) -> pa.RecordBatchReader:
        available = {
            name
            for (name,) in connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                [self.table.schema, self.table.name],
            ).fetchall()
        }
        qualified = f"{self.table.schema}.{self.table.name}"
        if not available:
            tables = [
                f"{s}.{t}"
                for s, t in connection.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "ORDER BY ALL LIMIT 20"
                ).fetchall()
            ]
            raise DuckDBSourceError(
                f"table {qualified!r} not found in {str(self.path)!r}"
                + (f" (it has: {', '.join(tables)})" if tables else " (it has no tables)"),
                "DataError",
            )
        wanted = [*self.columns, *([self.incremental_key] if self.incremental_key else [])]
        missing = [c for c in wanted if c not in available]
        if missing:
            raise DuckDBSourceError(
                f"column(s) {', '.join(repr(c) for c in missing)} not found in table {qualified!r}",
                "DataError",
            )
        select = ", ".join(_quote(c) for c in self.columns) if self.columns else "*"
        sql = f"SELECT {select} FROM {_quote(self.table.schema)}.{_quote(self.table.name)}"
        conditions: list[str] = []
        params: list[str] = []
        if self.incremental_key and self.interval_start is not None:
            conditions.append(f"{_quote(self.incremental_key)} >= ?")
            params.append(self.interval_start)
        if self.incremental_key and self.interval_end is not None:
            # dlt's incremental end is open: a row at exactly interval_end belongs to the next run.
            conditions.append(f"{_quote(self.incremental_key)} < ?")
            params.append(self.interval_end)
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        try:
            return connection.sql(sql, params=params).to_arrow_reader(self.batch_rows)
        except duckdb.Error as exc:
            raise DuckDBSourceError(f"reading {qualified!r} failed: {exc}", "DataError") from None
