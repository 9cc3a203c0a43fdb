"""One large text object read as byte ranges, split at line boundaries.

A CSV or JSONL object is cut into ranges of about :data:`RANGE_BYTES`; each range owns the
lines that *start* in it, so the ranges tile the object exactly (a line crossing a cut
belongs to the range it starts in, which reads on until its end). Each range is fetched with
one ranged GET and parsed on its own (on pyarrow's threads) while the destination loads its
rows; :data:`RANGES_IN_FLIGHT` ranges at once, the next :data:`RANGES_AHEAD` downloading
meanwhile.

A cut is only certain to be a record boundary in JSONL (a JSON string cannot hold a raw
newline). In CSV a quoted field may span lines, so a cut can fall inside a value. The reader
checks instead of guessing: parsed from a true record start, a range's rows are those a
single stream reads there, up to its end; had the range ended inside an open quote, its
last row would hold that value, running to the range's end, line break included. So a range
whose last row holds no line break ended on a record boundary, and the next range starts on
one (:func:`ends_cleanly`). Checked in order from the object's start, the first range that
fails (or fails to parse) is read again, with the rest of the object, as one stream, past
the rows it already handed out.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

import pyarrow as pa
import pyarrow.compute as pc

from kingest.runner.formats import FileKind

# Bytes per range: big enough that a request's fixed cost (a round trip; on some stores a
# pass over the whole object) is small beside its transfer and parse. A range is fetched
# whole, then parsed by pyarrow's threads while its rows go to the destination. 16 MB ranges
# were slower (2M-row CSV/JSONL objects: 1.2-1.3x the time of 32 MB ones).
RANGE_BYTES = 32 * 1024 * 1024
# Ranges parsed at once: one. Their rows go to the destination in order, and one range
# parsed by pyarrow's threads already keeps both cores busy.
RANGES_IN_FLIGHT = 1
# Ranges downloaded ahead of the one being parsed: one. Without it the parser waited for
# every GET (a 205 MB CSV spent 1.3 of its 3 s waiting); with it a large object loads in
# 0.7-0.85x the time (605 MB CSV: 16.2 -> 11.2 s; 505 MB JSONL: 13.6 -> 9.7 s). The range
# held ahead costs RANGE_BYTES of memory, which DuckDB's smaller buffer pool gives back
# (see kingest.runner.duckdb_destination.DEFAULT_MEMORY_LIMIT).
RANGES_AHEAD = 1
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


def _newline_at_or_after(data: pa.Buffer, position: int) -> int:
    """The index of the first ``\\n`` in ``data`` at or after ``position``; -1 if none."""
    while position < data.size:
        chunk = data.slice(position, min(_OVERSHOOT, data.size - position)).to_pybytes()
        found = chunk.find(b"\n")
        if found != -1:
            return position + found
        position += len(chunk)
    return -1


def read_lines(file: pa.NativeFile, start: int, end: int, size: int) -> tuple[int, pa.Buffer]:
    """The lines of ``file`` (``size`` bytes; a handle of this range's own) that start in
    ``[start, end)``, and the offset of the first of them. A line starts at 0 and after
    every ``\\n``. The bytes are read into one buffer, without copies."""
    begin = max(0, start - 1)
    stop = min(size, end + _OVERSHOOT)
    file.seek(begin)
    data = file.read_buffer(stop - begin)
    head = 0
    if start > 0:
        newline = _newline_at_or_after(data, 0)
        if newline == -1 or begin + newline + 1 >= end:
            return end, pa.py_buffer(b"")
        head = newline + 1
    if end >= size:
        return begin + head, data.slice(head)
    tail = _newline_at_or_after(data, end - 1 - begin)
    parts = [data]
    while tail == -1 and stop < size:
        more = file.read_buffer(min(size, stop + _OVERSHOOT * 2 ** len(parts)) - stop)
        found = _newline_at_or_after(more, 0)
        tail = -1 if found == -1 else stop - begin + found
        stop += more.size
        parts.append(more)
    joined = parts[0] if len(parts) == 1 else pa.py_buffer(b"".join(p.to_pybytes() for p in parts))
    return begin + head, joined.slice(head, (joined.size if tail == -1 else tail + 1) - head)


def ends_cleanly(batches: Iterable[pa.RecordBatch]) -> bool:
    """Whether no text value of ``batches`` (a CSV range's last row) holds a line break:
    then a range parsed from a record start ended outside any quoted field (see the module
    docstring)."""
    for batch in batches:
        for column in batch.columns:
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                continue
            if pc.any(pc.match_substring(column, "\n")).as_py():
                return False
    return True
