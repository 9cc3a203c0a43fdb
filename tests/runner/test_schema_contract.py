"""--schema-contract's pure part: which columns are new or change type, and what each mode does
with a batch (end to end in test_flags.py)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kingest.runner.errors import SchemaContractViolation
from kingest.runner.schema_contract import Contract, ContractFilter, compare

EXISTING = {"id": "bigint", "score": "double", "name": "text", "_dlt_load_id": "text"}


def test_new_columns_and_type_changes_are_found_but_widening_and_nulls_are_not() -> None:
    schema = pa.schema([
        ("id", pa.int64()), ("score", pa.int32()), ("name", pa.int64()),
        ("empty", pa.null()), ("extra", pa.string()), ("_dlt_id", pa.string()),
    ])  # fmt: skip
    changes = compare(schema, EXISTING)
    assert changes.new == ("extra",)
    assert changes.changed == (("name", "text", "bigint"),)
    assert changes.describe() == "new column 'extra'; column 'name' changes type text -> bigint"


BATCH = pa.RecordBatch.from_pydict({"id": [1, 2, 3], "extra": [None, "x", None]})


@pytest.mark.parametrize(
    ("contract", "ids", "names"),
    [
        (Contract.EVOLVE, [1, 2, 3], ["id", "extra"]),
        (Contract.DISCARD_VALUE, [1, 2, 3], ["id"]),
        (Contract.DISCARD_ROW, [1, 3], ["id"]),
    ],
)
def test_each_mode_on_a_batch_with_a_new_column(
    contract: Contract, ids: list[int], names: list[str]
) -> None:
    rule = ContractFilter(contract, BATCH.schema, EXISTING)
    out = rule.apply(BATCH)
    assert out.column("id").to_pylist() == ids and out.schema.names == names == rule.schema.names


def test_freeze_raises_and_a_new_table_accepts_anything() -> None:
    with pytest.raises(SchemaContractViolation, match="new column 'extra'"):
        ContractFilter(Contract.FREEZE, BATCH.schema, EXISTING)
    assert ContractFilter(Contract.FREEZE, BATCH.schema, None).apply(BATCH) == BATCH
