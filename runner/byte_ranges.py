"""One large text object read as byte ranges in parallel, split at line boundaries.

A CSV or JSONL object is cut into ranges of about :data:`RANGE_BYTES`; each range owns the
lines that *start* in it, so the ranges tile the object exactly (a line crossing a cut
belongs to the range it starts in, which reads on until its end). Each range is fetched with
one ranged GET and parsed on its own, several at once, while earlier ranges are loaded.

A cut is only certain to be a record boundary in JSONL (a JSON string cannot hold a raw
newline). In CSV a quoted field may span lines, so a cut can fall inside a value. The reader
checks instead of guessing: a range parsed from a true record start whose values hold no
newline ended outside any quoted field, so its end is a true record start as well (had the
range ended inside an open quote, its last value would run to the range's end, newline
included). Checked in order from the object's start, the first range that fails the check is
read again, with the rest of the object, as one stream (:func:`ends_cleanly`).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

import pyarrow as pa
import pyarrow.compute as pc

from kingest.runner.formats import FileKind

# Bytes per range: big enough that a request's fixed cost (a round trip; on some stores a
# pass over the whole object) is small beside its transfer and parse, small enough that the
# ranges in flight (each held whole with its parsed rows) keep memory bounded.
RANGE_BYTES = 32 * 1024 * 1024
# Ranges in flight at most (fetched, parsing, or parsed and waiting for their turn): two keep
# both a download and a parse going; each holds about twice its bytes.
RANGES_IN_FLIGHT = 2
# Objects smaller than this are streamed whole; larger ones are cut in two ranges or more.
SPLIT_FROM_BYTES = RANGE_BYTES * 3 // 2
# Bytes read past a range's end to find where its last line ends (more are read if needed).
_OVERSHOOT = 64 * 1024
# Encodings in which a newline byte is always a newline character.
_ASCII_COMPATIBLE = {"utf8", "utf-8", "ascii", "latin1", "latin-1", "iso-8859-1", "cp1252"}


def splittable(kind: FileKind, encoding: str | None, size: int) -> bool:
    """Whether an object is read as ranges: uncompressed CSV/JSONL in an encoding where
    ``\\n`` is a line end, large enough to be worth it (compressed streams cannot be cut)."""
    return (
        kind.family in ("csv", "jsonl")
        and kind.compression is None
        and (encoding or "utf8").lower() in _ASCII_COMPATIBLE
        and size >= SPLIT_FROM_BYTES
    )


def cut(size: int, range_bytes: int = RANGE_BYTES) -> list[tuple[int, int]]:
    """``[0, size)`` as consecutive ``(start, end)`` ranges of about ``range_bytes``."""
    count = max(1, round(size / range_bytes))
    bounds = [size * i // count for i in range(count + 1)]
    return list(pairwise(bounds))


def read_lines(file: pa.NativeFile, start: int, end: int, size: int) -> tuple[int, memoryview]:
    """The lines of ``file`` (``size`` bytes) that start in ``[start, end)``, and the offset
    of the first of them. A line starts at 0 and after every ``\\n``."""
    begin = max(0, start - 1)
    stop = min(size, end + _OVERSHOOT)
    data = file.read_at(stop - begin, begin)
    head = 0
    if start > 0:
        newline = data.find(b"\n")
        if newline == -1 or begin + newline + 1 >= end:
            return end, memoryview(b"")
        head = newline + 1
    if end >= size:
        return begin + head, memoryview(data)[head:]
    tail = data.find(b"\n", end - 1 - begin)
    parts = [data]
    while tail == -1 and stop < size:
        more = file.read_at(min(size, stop + _OVERSHOOT * 2 ** len(parts)) - stop, stop)
        stop += len(more)
        newline = more.find(b"\n")
        tail = -1 if newline == -1 else sum(map(len, parts)) + newline
        parts.append(more)
    joined = memoryview(parts[0] if len(parts) == 1 else b"".join(parts))
    return begin + head, joined[head : len(joined) if tail == -1 else tail + 1]


def ends_cleanly(batches: Iterable[pa.RecordBatch]) -> bool:
    """Whether no text value of a CSV range holds a line break: then a range parsed from a
    record start ended outside any quoted field (see the module docstring)."""
    for batch in batches:
        for column in batch.columns:
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                continue
            if pc.any(pc.match_substring(column, "\n")).as_py():
                return False
    return True
