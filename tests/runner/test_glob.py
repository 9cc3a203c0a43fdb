"""Key globs: which keys a ``--source-table`` pattern selects, where listing starts, hints."""

from __future__ import annotations

import pytest

from kingest.runner.errors import UsageError
from kingest.runner.glob import ObjectGlob, literal_prefix

KEYS = ["a.csv", "d/a.csv", "d/b.csv", "d/e/c.csv", "d/e/f/g.csv", "d/ab.csv", "x.csv.bak"]


@pytest.mark.parametrize(
    ("pattern", "selected"),
    [
        ("*.csv", ["a.csv"]),
        ("d/*.csv", ["d/a.csv", "d/b.csv", "d/ab.csv"]),
        ("d/**/*.csv", ["d/a.csv", "d/b.csv", "d/e/c.csv", "d/e/f/g.csv", "d/ab.csv"]),
        ("**/c.csv", ["d/e/c.csv"]),
        ("d/?.csv", ["d/a.csv", "d/b.csv"]),
        ("d/[ab].csv", ["d/a.csv", "d/b.csv"]),
        ("d/[!a].csv", ["d/b.csv"]),
        ("d/e/c.csv", ["d/e/c.csv"]),
        ("x.csv", []),
    ],
)
def test_a_pattern_selects_exactly_its_keys(pattern: str, selected: list[str]) -> None:
    glob = ObjectGlob.parse(f"bkt/{pattern}")
    assert [k for k in KEYS if glob.matches(k)] == selected


def test_a_star_does_not_cross_a_folder_but_a_double_star_does() -> None:
    assert not ObjectGlob.parse("bkt/*.csv").matches("d/a.csv")
    assert ObjectGlob.parse("bkt/**").matches("d/e/f/g.csv")


def test_listing_starts_at_the_literal_prefix() -> None:
    assert literal_prefix("logs/2026-*/part?.csv") == "logs/2026-"
    assert ObjectGlob.parse("bkt/d/[ab].csv").prefix == "d/"
    assert ObjectGlob.parse("bkt/d/e/c.csv").is_exact


def test_hints_are_split_off_and_a_hash_in_a_key_stays() -> None:
    glob = ObjectGlob.parse("s3://bkt/data/*.txt#jsonl#encoding=latin-1")
    assert (glob.bucket, glob.pattern) == ("bkt", "data/*.txt")
    assert (glob.hints.format, glob.hints.encoding) == ("jsonl", "latin-1")
    assert ObjectGlob.parse("bkt/vendor#7/*.csv").pattern == "vendor#7/*.csv"
    assert ObjectGlob.parse("bkt/x#ndjson").hints.format == "jsonl"


@pytest.mark.parametrize("table", ["bkt", "bkt/", "bkt//x.csv", "bkt/a.csv#csv#jsonl"])
def test_a_malformed_table_is_a_usage_error(table: str) -> None:
    with pytest.raises(UsageError, match="--source-table"):
        ObjectGlob.parse(table)
