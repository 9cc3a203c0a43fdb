"""The incremental cursor of a SQL-like source, remembered between runs as dlt remembers it.

With ``--incremental-key`` on a DuckDB table or ``query:`` source, a run reads only the rows
from the cursor on (``key >= last_value``: dlt's closed start, as ingestr 0.14 runs it), skips
the rows at exactly ``last_value`` that an earlier run loaded (their hashes are stored with the
cursor), and records the new cursor - the highest value read and the hashes of the rows holding
it - in the destination's pipeline state, in the same commit as the rows
(:mod:`kingest.runner.dlt_state` has the format). A run that fails commits neither.

:func:`plan_cursor` decides, from the flags and the stored state, where a run starts and whether
it records; :class:`CursorTracker` follows the stream and yields the new cursor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kingest.runner.dlt_state import CursorAddress, CursorState, Json, cursor_in, row_hash
from kingest.runner.errors import DataError, UsageError
from kingest.runner.interfaces import LoadOptions, Strategy


@dataclass(frozen=True)
class CursorPlan:
    """How one run uses and moves the cursor.

    ``start``: the stored cursor the rows are read from (None: from the beginning, or from
    ``--interval-start``). ``carry``: the cursor the new values are combined with (the stored
    one, or None for a fresh start). ``unique_on``: the columns a boundary row's hash covers
    (None: the whole row; empty: no boundary hashes, rows at the boundary are read again).
    ``records``: False for a bounded backfill (``--interval-end``), which leaves it as it was.
    """

    address: CursorAddress
    start: CursorState | None
    carry: CursorState | None
    unique_on: tuple[str, ...] | None
    initial_value: Any
    records: bool = True
    stored: CursorState | None = None
    """The cursor as stored before this run (what the result reports as ``previous``)."""


def plan_cursor(
    options: LoadOptions, address: CursorAddress, stored_state: Json | None
) -> CursorPlan:
    """Where this run starts and what it records (pure; see the README's cursor rules).

    - ``--full-refresh`` and ``replace`` read everything and start the cursor afresh;
    - ``--interval-end`` is a backfill of a bounded window: the cursor is neither used nor moved;
    - ``--interval-start`` alone reads from that value and moves the cursor forward only;
    - otherwise the run resumes from the stored cursor.
    """
    stored = None if options.full_refresh else cursor_in(stored_state, address)
    if options.strategy is Strategy.DELETE_INSERT:
        unique_on: tuple[str, ...] | None = ()  # its delete makes re-reading the boundary safe
    elif options.primary_key:
        unique_on = options.primary_key
    else:
        unique_on = None
    initial = stored.initial_value if stored else options.interval_start
    if options.interval_end:
        return CursorPlan(address, None, None, unique_on, initial, False, stored)
    if options.strategy is Strategy.REPLACE or options.full_refresh:
        return CursorPlan(address, None, None, unique_on, initial, True, stored)
    if options.interval_start:
        return CursorPlan(address, None, stored, unique_on, initial, True, stored)
    return CursorPlan(address, stored, stored, unique_on, initial, True, stored)


def _scalar(value: Any, data_type: pa.DataType) -> pa.Scalar:
    try:
        return pa.scalar(value, type=data_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return pa.scalar(value).cast(data_type)


class CursorTracker:
    """Follows a stream: drops boundary rows loaded before, finds the new cursor."""

    def __init__(self, plan: CursorPlan) -> None:
        self.plan = plan
        self.rows_skipped = 0
        carry = plan.carry
        self._last: Any = carry.last_value if carry else None
        self._hashes: set[str] = set(carry.unique_hashes) if carry else set()
        self._column: str | None = None

    @property
    def previous(self) -> Any:
        """The stored cursor's value before this run (None if there was none)."""
        return self.plan.stored.last_value if self.plan.stored else None

    def wrap(self, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
        """``reader`` without the boundary rows loaded before, observed as it is read."""
        self._column = self._resolve(reader.schema)
        return pa.RecordBatchReader.from_batches(reader.schema, self._follow(reader))

    def _resolve(self, schema: pa.Schema) -> str:
        key = self.plan.address.column
        if key in schema.names:
            return key
        matches = [n for n in schema.names if n.lower() == key.lower()]
        if len(matches) != 1:
            raise UsageError(
                f"--incremental-key {key!r} is not a column of the source "
                f"(columns: {', '.join(schema.names)})"
            )
        return matches[0]

    def _follow(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in reader:
            batch = self._without_loaded(batch)
            if batch.num_rows:
                self._observe(batch)
            yield batch

    def _hashes_of(self, rows: pa.RecordBatch) -> list[str]:
        unique_on = self.plan.unique_on
        if unique_on is None:
            return [row_hash(row) for row in rows.to_pylist()]
        values = rows.select(list(unique_on)).to_pylist()
        return [row_hash([row[k] for k in unique_on]) for row in values]

    def _without_loaded(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        start = self.plan.start
        if start is None or not start.unique_hashes or self.plan.unique_on == ():
            return batch
        column = batch.column(self._column)
        at_start = pc.fill_null(pc.equal(column, _scalar(start.last_value, column.type)), False)
        if not pc.any(at_start).as_py():
            return batch
        loaded = set(start.unique_hashes)
        hashes = iter(self._hashes_of(batch.filter(at_start)))
        keep = [not hit or next(hashes) not in loaded for hit in at_start.to_pylist()]
        kept = batch.filter(pa.array(keep))
        self.rows_skipped += batch.num_rows - kept.num_rows
        return kept

    def _observe(self, batch: pa.RecordBatch) -> None:
        column = batch.column(self._column)
        if column.null_count:
            raise DataError(
                f"--incremental-key {self._column!r}: {column.null_count} row(s) have no value "
                "(NULL); a cursor cannot pass them (dlt refuses them too); filter them out with "
                "a query: source table, or pick another column"
            )
        highest = pc.max(column)
        value = highest.as_py()
        try:
            newer = self._last is None or value > self._last
            same = not newer and value == self._last
        except TypeError:
            raise DataError(
                f"--incremental-key {self._column!r}: value {value!r} cannot be compared with "
                f"the stored cursor {self._last!r}; run with --full-refresh to start it afresh"
            ) from None
        if not (newer or same):
            return
        if self.plan.unique_on == ():
            boundary: list[str] = []
        else:
            boundary = self._hashes_of(batch.filter(pc.equal(column, highest)))
        if newer:
            self._last, self._hashes = value, set(boundary)
        else:
            self._hashes.update(boundary)

    def update(self) -> tuple[CursorAddress, CursorState] | None:
        """The cursor to store after the stream was read (None: store nothing new)."""
        if not self.plan.records or self._last is None:
            return None
        return self.plan.address, CursorState(
            self._last, tuple(sorted(self._hashes)), self.plan.initial_value
        )

    def report(self) -> dict[str, Any]:
        """The result JSON's ``cursor`` object (values as JSON: timestamps in ISO 8601)."""
        update = self.update()
        value = update[1].last_value if update else self.previous
        return {
            "key": self.plan.address.column,
            "value": _json_value(value),
            "previous": _json_value(self.previous),
            "stored": update is not None,
            "rows_skipped": self.rows_skipped,
        }


_REPORTED_CHARS = 200  # the result JSON must stay within its 4096 bytes


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text if len(text) <= _REPORTED_CHARS else text[:_REPORTED_CHARS] + "..."
