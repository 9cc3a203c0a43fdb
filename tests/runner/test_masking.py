"""--mask: each of ingestr's algorithms on Arrow batches, and the errors for bad values."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pytest

from kingest.runner.errors import UsageError
from kingest.runner.masking import ALGORITHMS, Masker, parse_masks


def masked(spec: str, values: list[Any], data_type: pa.DataType | None = None) -> pa.Array:
    """Column ``c`` of a batch holding ``values``, masked with ``c:<spec>``."""
    batch = pa.RecordBatch.from_pydict({"c": pa.array(values, data_type)})
    masker = Masker(parse_masks([f"c:{spec}"]), batch.schema)
    out = masker.apply(batch)
    assert out.schema == masker.schema
    return out.column("c")


@pytest.mark.parametrize(
    ("spec", "values", "expected"),
    [
        ("email", ["john.doe@example.com", "ab@x.org", "noat", None],
         ["j******e@example.com", "**@x.org", "****", None]),
        ("phone", ["+1-555-123-4567", "123", ""], ["155-***-****", "***", ""]),
        ("credit_card", ["4111-1111-1111-1111", "12"], ["************1111", "**"]),
        ("ssn", ["123-45-6789", "12-3"], ["***-**-6789", "***"]),
        ("redact", ["secret", None], ["REDACTED", None]),
        ("stars", ["secret123", "é"], ["*********", "*"]),
        ("fixed", ["sk_live"], ["MASKED"]),
        ("fixed:MASKED_KEY", ["sk_live"], ["MASKED_KEY"]),
        ("partial:2", ["Jonathan", "Bob"], ["Jo****an", "***"]),
        ("partial", ["Jonathan"], ["Jo****an"]),
        ("first_letter", ["Alice", "A"], ["A****", "A"]),
        ("month_year", ["2024-03-15", "not a date"], ["2024-03", None]),
        ("year_only", ["2024-03-15T10:00:00Z"], [2024]),
        ("range:10000", [45000, 9999], ["40000-50000", "0-10000"]),
        ("range:100", [234.0], ["200-300"]),
        ("round:5000", [52300, 52500, None], [50000, 55000, None]),
        ("round:10", [34.0], [30]),
    ],
)  # fmt: skip
def test_deterministic_algorithms_match_ingestr(
    spec: str, values: list[Any], expected: list[Any]
) -> None:
    assert masked(spec, values).to_pylist() == expected


def test_hashes_are_hex_digests_of_the_text_form() -> None:
    sha = hashlib.sha256(b"john@example.com").hexdigest()
    assert masked("hash", ["john@example.com", None]).to_pylist() == [sha, None]
    assert masked("sha256", ["john@example.com"]).to_pylist() == [sha]
    assert masked("md5", [42]).to_pylist() == [hashlib.md5(b"42").hexdigest()]
    key_hmac = hmac.new(b"k:1", b"CUST1", hashlib.sha256).hexdigest()
    assert masked("hmac:k:1", ["CUST1"]).to_pylist() == [key_hmac]


def test_uuid_and_sequential_give_one_token_per_value_across_batches() -> None:
    schema = pa.schema([("c", pa.string())])
    for spec, check in (("uuid", lambda t: len(t) == 36), ("sequential", lambda t: t >= 1)):
        masker = Masker(parse_masks([f"c:{spec}"]), schema)
        first = masker.apply(pa.RecordBatch.from_pydict({"c": ["a", "b", "a"]}, schema=schema))
        second = masker.apply(pa.RecordBatch.from_pydict({"c": ["b", "c", None]}, schema=schema))
        tokens = first.column("c").to_pylist() + second.column("c").to_pylist()
        assert tokens[0] == tokens[2] and tokens[1] == tokens[3] and tokens[5] is None
        assert len({tokens[0], tokens[1], tokens[4]}) == 3 and all(check(t) for t in tokens[:5])
    sequential = masked("sequential", ["x", "y", "x", "z"]).to_pylist()
    assert sequential == [1, 2, 1, 3]


def test_noise_stays_within_its_level_and_keeps_the_numeric_type() -> None:
    values = [100_000, 5, 0, None]
    out = masked("noise:0.1", values, pa.int64())
    assert out.type == pa.int64() and out[3].as_py() is None
    for before, after in zip(values[:3], out.to_pylist()[:3], strict=True):
        assert abs(after - before) <= 0.1 * max(abs(before), 1) + 1
    floats = masked("noise:0.05", [98.6], pa.float64())
    assert floats.type == pa.float64() and abs(floats[0].as_py() - 98.6) <= 0.05 * 98.6


def test_random_keeps_digit_count_type_and_length() -> None:
    ints = masked("random", [35, 7, 123, None], pa.int64()).to_pylist()
    assert [len(str(v)) for v in ints[:3]] == [2, 1, 3] and ints[3] is None
    texts = masked("random", ["secret", None]).to_pylist()
    assert len(texts[0]) == 6 and texts[0].isalnum() and texts[1] is None


def test_date_shift_stays_within_the_days_and_keeps_dates_and_timestamps() -> None:
    day = date(1990, 5, 15)
    shifted = masked("date_shift:30", [day] * 50, pa.date32())
    assert shifted.type == pa.date32()
    assert all(abs((d - day).days) <= 30 for d in shifted.to_pylist())
    moment = datetime(2024, 3, 15, 10, 30)
    stamps = masked("date_shift:2", [moment] * 20, pa.timestamp("us"))
    assert stamps.type == pa.timestamp("us")
    for shifted_moment in stamps.to_pylist():
        assert abs((shifted_moment - moment).days) <= 2
        assert shifted_moment.time() == moment.time()
    assert masked("date_shift:1", ["2024-01-10"]).to_pylist()[0] in (
        "2024-01-09", "2024-01-10", "2024-01-11",
    )  # fmt: skip


def test_year_only_and_month_year_on_temporal_columns() -> None:
    assert masked("year_only", [date(2024, 3, 15)], pa.date32()).to_pylist() == [2024]
    ts = pa.timestamp("us", tz="UTC")
    assert masked("month_year", [datetime(2024, 3, 15)], ts).to_pylist() == ["2024-03"]


def test_every_documented_algorithm_is_known() -> None:
    assert set(ALGORITHMS) == {
        "hash", "sha256", "md5", "hmac", "email", "phone", "credit_card", "ssn", "redact",
        "stars", "fixed", "random", "partial", "first_letter", "uuid", "sequential", "round",
        "range", "noise", "date_shift", "year_only", "month_year",
    }  # fmt: skip


def test_comma_separated_masks_as_in_ingestr_mask_variable() -> None:
    masks = parse_masks(["email:hash,api_key:fixed:a,b,ssn:redact"])
    assert [(m.column, m.algorithm, m.param) for m in masks] == [
        ("email", "hash", None), ("api_key", "fixed", "a,b"), ("ssn", "redact", None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("email", r"--mask 'email': expected 'column:algorithm\[:param\]'"),
        ("email:scramble", r"--mask 'email:scramble': unknown algorithm 'scramble' for column "
                           r"'email'; known: hash, sha256"),
        ("key:hmac", r"--mask 'key:hmac': hmac needs a key"),
        ("salary:round:abc", r"--mask 'salary:round:abc': the round parameter must be a number"),
        ("salary:round:0", r"must be above 0"),
        ("email:hash:x", r"hash takes no parameter"),
    ],
)  # fmt: skip
def test_bad_mask_values_name_the_flag_and_value(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_masks([value])


def test_a_column_masked_twice_or_missing_is_refused() -> None:
    with pytest.raises(UsageError, match="column 'a' is masked twice"):
        parse_masks(["a:hash", "a:md5"])
    with pytest.raises(UsageError, match=r"--mask: 'nope' not a column of the source \(columns: a"):
        Masker(parse_masks(["nope:hash"]), pa.schema([("a", pa.string())]))
