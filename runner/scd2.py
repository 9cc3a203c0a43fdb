"""``--incremental-strategy scd2`` into DuckDB: every version of a row, with its validity.

A row version is current while ``_dlt_valid_to`` is NULL (dlt's validity columns; both
``TIMESTAMP WITH TIME ZONE``, the load's time). One load, in the load's transaction:

1. staged rows are reduced to one per ``--primary-key`` (the last read, or the highest
   ``--incremental-key``);
2. a current version whose key is staged with different values is closed
   (``_dlt_valid_to`` = this load's time): the changed row keeps its old version;
3. without ``--incremental-key`` the load is a full snapshot: a current version whose key is
   not staged is closed too (deleted in the source). With one, the load is a slice (the rows
   after the cursor) and absent keys stay current - ingestr's Go rules;
4. staged rows without a current version (new keys, and the changed ones closed in 2) are
   inserted with ``_dlt_valid_from`` = this load's time.

Values are compared column by column (``IS DISTINCT FROM``: NULL equals NULL), over the
columns this load carries; bookkeeping columns (``_dlt_*``) are not compared.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

VALID_FROM = "_dlt_valid_from"
VALID_TO = "_dlt_valid_to"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def deduplicated(stage: str, keys: tuple[str, ...], order_by: str | None) -> str:
    """SELECT of ``stage`` keeping one row per key: the highest ``order_by``, else the last."""
    partition = ", ".join(_quote(k) for k in keys)
    order = f"{_quote(order_by)} DESC, rowid DESC" if order_by else "rowid DESC"
    return (
        f"SELECT * FROM {stage} "
        f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {order}) = 1"
    )


def versions(stage_select: str, valid_from: datetime) -> tuple[str, list[object]]:
    """A SELECT of staged rows as new current versions, and its parameters."""
    return (
        f"SELECT *, ?::TIMESTAMPTZ AS {VALID_FROM}, NULL::TIMESTAMPTZ AS {VALID_TO} "
        f"FROM ({stage_select})",
        [valid_from],
    )


def merge(
    con: duckdb.DuckDBPyConnection,
    *,
    table: str,
    stage: str,
    keys: tuple[str, ...],
    compared: list[str],
    valid_from: datetime,
    snapshot: bool,
) -> int:
    """Steps 2-4 on an existing ``table`` (holding the stage's columns) from the deduplicated
    ``stage``; returns the number of versions inserted."""
    for column in (VALID_FROM, VALID_TO):
        con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} TIMESTAMPTZ")
    match = " AND ".join(f"t.{_quote(k)} = s.{_quote(k)}" for k in keys)
    changed = " OR ".join(f"t.{_quote(c)} IS DISTINCT FROM s.{_quote(c)}" for c in compared)
    if changed:
        con.execute(
            f"UPDATE {table} AS t SET {VALID_TO} = ? FROM {stage} AS s "
            f"WHERE {match} AND t.{VALID_TO} IS NULL AND ({changed})",
            [valid_from],
        )
    if snapshot:
        con.execute(
            f"UPDATE {table} AS t SET {VALID_TO} = ? WHERE t.{VALID_TO} IS NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {stage} AS s WHERE {match})",
            [valid_from],
        )
    new_versions, params = versions(
        f"SELECT * FROM {stage} AS s WHERE NOT EXISTS (SELECT 1 FROM {table} AS t "
        f"WHERE {match} AND t.{VALID_TO} IS NULL)",
        valid_from,
    )
    result = con.execute(f"INSERT INTO {table} BY NAME {new_versions}", params).fetchone()
    return int(result[0]) if result else 0
