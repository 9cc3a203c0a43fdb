"""Pure rules of `runner/formats.py`: names, widening, exact casts."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from kingest.runner.formats import LossyValue, conform, distinct_names, unify_types


def test_repeated_names_get_the_first_free_suffix() -> None:
    assert distinct_names(["id", "v", "v", "v_1", "v"]) == ["id", "v", "v_2", "v_1", "v_3"]
    assert distinct_names(["a", "b"]) == ["a", "b"]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (pa.int32(), pa.int64(), pa.int64()),
        (pa.uint64(), pa.uint32(), pa.uint64()),
        (pa.uint64(), pa.int64(), pa.decimal128(20, 0)),
        (pa.int64(), pa.decimal128(10, 2), pa.decimal128(21, 2)),
        (pa.decimal128(5, 2), pa.decimal128(14, 4), pa.decimal128(14, 4)),
        (pa.decimal128(38, 0), pa.decimal128(10, 2), None),
        (pa.int64(), pa.float64(), pa.float64()),
        (pa.decimal128(10, 2), pa.float64(), pa.float64()),
    ],
)
def test_numbers_widen_to_a_type_holding_both(
    a: pa.DataType, b: pa.DataType, expected: pa.DataType | None
) -> None:
    assert unify_types(a, b) == expected
    assert unify_types(b, a) == expected


def test_conform_names_the_first_integer_a_double_would_round() -> None:
    batch = pa.record_batch({"v": pa.array([1, 2**53, 2**53 + 1, 2**60], pa.int64())})
    with pytest.raises(LossyValue) as caught:
        conform(batch, pa.schema([("v", pa.float64())]))
    assert (caught.value.column, caught.value.row, caught.value.value) == ("v", 3, str(2**53 + 1))


def test_conform_keeps_timestamps_that_lose_no_digit() -> None:
    ns = pa.array([1_700_000_000_123_456_000, None], pa.timestamp("ns", tz="Europe/Berlin"))
    out = conform(pa.record_batch({"t": ns}), pa.schema([("t", pa.timestamp("us", tz="UTC"))]))
    assert out.column(0).cast(pa.int64()).to_pylist() == [1_700_000_000_123_456, None]


def test_conform_names_the_first_decimal_no_double_equals() -> None:
    exact = pa.array([Decimal("0.10"), Decimal("123456.25"), None], pa.decimal128(10, 2))
    out = conform(pa.record_batch({"d": exact}), pa.schema([("d", pa.float64())]))
    assert out.column(0).to_pylist() == [0.1, 123456.25, None]
    big = pa.array([Decimal(1), Decimal("92233720368547758070")], pa.decimal128(38, 0))
    with pytest.raises(LossyValue) as caught:
        conform(pa.record_batch({"d": big}), pa.schema([("d", pa.float64())]))
    assert (caught.value.row, caught.value.value) == (2, "92233720368547758070")
