"""``--schema-contract``: what a load does when the source no longer fits the destination table.

dlt's contract modes (ingestr passes the one word to dlt, which applies it to tables, columns
and data types alike), compared against the table as the destination holds it, after
``--schema-naming``:

- ``evolve`` (default): new columns are added, a changed type is loaded as it comes;
- ``freeze``: a new column or a changed type fails the run before anything is written;
- ``discard_row``: rows holding a value in a new or changed column are left out (and the column
  with them), as dlt does for Arrow data;
- ``discard_value``: the new or changed column is left out; its rows load without it.

A table that does not exist yet is created whatever the mode (dlt: the first load of a table
infers its schema; the contract governs what changes it afterwards); ``--full-refresh``
drops the table first, so the contract has nothing to compare with. Types are compared as dlt
types (``bigint``, ``double``, ``text``, ...); an integer column loaded into a ``double`` or
``decimal`` column is no change (the destination widens it without loss), nor is a column
that holds only nulls. dlt's ``_dlt_*`` bookkeeping columns are never compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc

from kingest.runner.dlt_files import dlt_data_type
from kingest.runner.errors import SchemaContractViolation

_WIDENINGS = {("bigint", "double"), ("bigint", "decimal")}


class Contract(StrEnum):
    """The ``--schema-contract`` modes."""

    EVOLVE = "evolve"
    FREEZE = "freeze"
    DISCARD_ROW = "discard_row"
    DISCARD_VALUE = "discard_value"


@dataclass(frozen=True)
class SchemaChanges:
    """How a stream's columns differ from the destination table's."""

    new: tuple[str, ...]
    changed: tuple[tuple[str, str, str], ...]
    """(column, type in the table, type in the source)."""

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the contract acts on."""
        return self.new + tuple(name for name, _, _ in self.changed)

    def describe(self) -> str:
        """``new column 'x' (bigint); column 'y' changes type text -> bigint``."""
        parts = [f"new column {name!r}" for name in self.new]
        parts += [f"column {n!r} changes type {old} -> {new}" for n, old, new in self.changed]
        return "; ".join(parts)


def compare(schema: pa.Schema, existing: Mapping[str, str]) -> SchemaChanges:
    """The changes ``schema`` (the stream's) brings to a table of ``existing`` dlt types."""
    new: list[str] = []
    changed: list[tuple[str, str, str]] = []
    for field in schema:
        if field.name.startswith("_dlt_") or pa.types.is_null(field.type):
            continue
        incoming = dlt_data_type(field)
        held = existing.get(field.name)
        if held is None:
            new.append(field.name)
        elif held != incoming and (incoming, held) not in _WIDENINGS:
            changed.append((field.name, held, incoming))
    return SchemaChanges(tuple(new), tuple(changed))


class ContractFilter:
    """Applies a contract to each batch of one stream (decided once, from its schema)."""

    def __init__(
        self, contract: Contract, schema: pa.Schema, existing: Mapping[str, str] | None
    ) -> None:
        changes = SchemaChanges((), ())
        if existing is not None and contract is not Contract.EVOLVE:
            changes = compare(schema, existing)
        if changes.columns and contract is Contract.FREEZE:
            raise SchemaContractViolation(
                f"--schema-contract freeze: the source does not fit the destination table: "
                f"{changes.describe()}; nothing was loaded (use evolve to accept the change, "
                "discard_value or discard_row to leave it out)"
            )
        self._contract = contract
        self._dropped = set(changes.columns)
        self.schema = pa.schema([f for f in schema if f.name not in self._dropped])

    @property
    def active(self) -> bool:
        """Whether batches change at all."""
        return bool(self._dropped)

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` without the discarded rows and columns."""
        if not self._dropped:
            return batch
        if self._contract is Contract.DISCARD_ROW:
            keep = None
            for name in self._dropped:
                empty = pc.is_null(batch.column(name))
                keep = empty if keep is None else pc.and_(keep, empty)
            batch = batch.filter(keep)
        return batch.select(self.schema.names)
