"""Cutting a text object into ranges of whole lines, and telling a clean range end."""

from __future__ import annotations

import random
from itertools import pairwise

import pyarrow as pa
import pytest

from kingest.runner.byte_ranges import cut, ends_cleanly, read_lines, splittable
from kingest.runner.formats import FileKind


def lines_of(data: bytes, ranges: list[tuple[int, int]]) -> list[tuple[int, bytes]]:
    file = pa.BufferReader(data)
    owned = [read_lines(file, start, end, len(data)) for start, end in ranges]
    return [(start, bytes(part)) for start, part in owned]


@pytest.mark.parametrize("size", [1, 7, 100, 1001])
def test_cut_tiles_the_object_with_ranges_of_about_the_size_asked(size: int) -> None:
    ranges = cut(size, 10)
    assert ranges[0][0] == 0 and ranges[-1][1] == size
    assert all(a[1] == b[0] for a, b in pairwise(ranges))
    assert all(5 <= end - start <= 20 for start, end in ranges) or len(ranges) == 1


def test_ranges_own_the_lines_starting_in_them_and_tile_the_object() -> None:
    rng = random.Random(7)
    for _ in range(200):
        data = b"".join(
            b"x" * rng.randrange(0, 40) + b"\n" for _ in range(rng.randrange(1, 30))
        ) + b"y" * rng.randrange(0, 3)
        ranges = cut(len(data), rng.randrange(1, 50))
        owned = lines_of(data, ranges)
        assert b"".join(part for _, part in owned) == data
        offset = 0
        for start, part in owned:
            if part:
                assert start == offset and (start == 0 or data[start - 1 : start] == b"\n")
            offset += len(part)


def test_a_line_longer_than_the_overshoot_is_read_to_its_end() -> None:
    data = b"a\n" + b"b" * 300_000 + b"\nc\n"
    owned = lines_of(data, [(0, 1), (1, 3), (3, len(data))])
    assert owned == [(0, b"a\n"), (2, b"b" * 300_000 + b"\n"), (300_003, b"c\n")]


def test_a_range_inside_one_line_owns_nothing() -> None:
    data = b"a" * 100 + b"\n"
    assert lines_of(data, [(0, 10), (10, 20), (20, 101)]) == [(0, data), (20, b""), (101, b"")]


def test_only_uncompressed_text_in_an_ascii_compatible_encoding_is_cut() -> None:
    big = 10**9
    assert splittable(FileKind("csv", None), None, big)
    assert splittable(FileKind("jsonl", None), "UTF-8", big)
    assert not splittable(FileKind("csv", "gzip"), None, big)
    assert not splittable(FileKind("csv", None), "utf-16", big)
    assert not splittable(FileKind("parquet", None), None, big)
    assert not splittable(FileKind("csv", None), None, 1000)


def test_a_range_ends_cleanly_unless_a_text_value_holds_a_line_break() -> None:
    clean = pa.record_batch({"id": [1, 2], "name": ["a", "b,c"]})
    broken = pa.record_batch({"id": [1, 2], "name": ["a", 'open "quote\nrest']})
    assert ends_cleanly([clean])
    assert not ends_cleanly([clean, broken])
    assert ends_cleanly([pa.record_batch({"n": pa.array(["x\n"], pa.large_string())})]) is False
