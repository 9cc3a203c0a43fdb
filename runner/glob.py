"""``--source-table`` for S3: ``<bucket>/<glob>[#hints]`` as a bucket, a key matcher and hints.

Glob semantics (the seed's table, plus what users expect from shells and dlt):

- ``**`` as a whole path segment matches zero or more folders (``b/**/*.csv`` includes
  ``b/x.csv``); elsewhere it is a plain ``*``;
- ``*`` and ``?`` never cross ``/``; ``[abc]``, ``[a-z]``, ``[!a]`` / ``[^a]`` are classes;
- a pattern without wildcards names exactly one object.

:attr:`ObjectGlob.prefix` is the pattern's longest literal prefix: listing starts there, so a
bucket with millions of objects outside it is never listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from kingest.runner.errors import UsageError

_WILDCARDS = "*?["
# S3 bucket names, plus legacy ones with underscores and upper case (us-east-1, pre-2018).
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")

FORMAT_HINTS = ("csv", "csv_headless", "jsonl", "ndjson", "parquet")


@dataclass(frozen=True)
class Hints:
    """Format hints from the table's ``#...`` suffix (``#csv_headless``, ``#encoding=latin-1``)."""

    format: str | None = None
    encoding: str | None = None


def _class_end(pattern: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start``, or -1 (then ``[`` is literal)."""
    i = start + 1
    if i < len(pattern) and pattern[i] in "!^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    end = pattern.find("]", i)
    return end


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a key glob (no bucket) into a regex matching whole keys."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        at_segment_start = i == 0 or pattern[i - 1] == "/"
        if pattern.startswith("**", i) and at_segment_start and pattern[i + 2 : i + 3] in ("/", ""):
            if i + 2 == n:
                out.append(".*")  # trailing `**`: everything below
                i += 2
            else:
                out.append("(?:.*/)?")  # `**/`: zero or more folders
                i += 3
            continue
        char = pattern[i]
        if char == "*":
            while i + 1 < n and pattern[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := _class_end(pattern, i)) != -1:
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\").replace("^", "\\^")
            # Classes match one character of a name, never the folder separator.
            out.append(f"(?!/)[{'^' if negate else ''}{body}]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard (the whole pattern if it has none)."""
    cut = min((i for i in (pattern.find(c) for c in _WILDCARDS) if i != -1), default=len(pattern))
    return pattern[:cut]


def _split_hints(table: str) -> tuple[str, Hints]:
    """Split a trailing ``#hint[#hint...]`` off; a ``#`` that starts no known hint is literal."""
    head, sep, tail = table.partition("#")
    while sep:
        parts = [p.strip() for p in re.split(r"[#,]", tail) if p.strip()]
        if parts and all(
            p.lower() in FORMAT_HINTS or p.lower().startswith("encoding=") for p in parts
        ):
            fmt = None
            encoding = None
            for part in parts:
                if part.lower().startswith("encoding="):
                    encoding = part.split("=", 1)[1].strip()
                    if not encoding:
                        raise UsageError("--source-table: '#encoding=' needs a name, e.g. latin-1")
                else:
                    if fmt is not None:
                        raise UsageError(f"--source-table: two format hints, #{fmt} and #{part}")
                    fmt = part.lower()
            if fmt == "ndjson":
                fmt = "jsonl"
            return head, Hints(format=fmt, encoding=encoding)
        more_head, sep, tail = tail.partition("#")
        head = f"{head}#{more_head}"
    return table, Hints()


@dataclass(frozen=True)
class ObjectGlob:
    """A parsed ``--source-table``: bucket, key pattern, listing prefix and format hints."""

    bucket: str
    pattern: str
    hints: Hints

    @property
    def prefix(self) -> str:
        """Where listing starts: the longest literal prefix of the key pattern."""
        return literal_prefix(self.pattern)

    @property
    def is_exact(self) -> bool:
        """Whether the pattern names exactly one object (no wildcards)."""
        return self.prefix == self.pattern

    def matches(self, key: str) -> bool:
        """Whether object ``key`` is selected by the pattern."""
        return self._regex.fullmatch(key) is not None

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        # Compiled once: a listing matches every key of the prefix (100,000 and more).
        return glob_to_regex(self.pattern)

    @classmethod
    def parse(cls, table: str) -> ObjectGlob:
        """Parse ``[s3://]<bucket>/<glob>[#hints]``; raises :class:`UsageError` naming the flag."""
        value, hints = _split_hints(table.strip())
        value = value.removeprefix("s3://")
        bucket, slash, pattern = value.partition("/")
        if not slash or not pattern:
            raise UsageError(
                f"--source-table {table!r}: expected '<bucket>/<file glob>', "
                "e.g. 'my_bucket/students/*.csv'"
            )
        if not _BUCKET.match(bucket):
            raise UsageError(f"--source-table: {bucket!r} is not a valid bucket name")
        if pattern.startswith("/"):
            raise UsageError(f"--source-table {table!r}: keys do not start with '/'")
        return cls(bucket=bucket, pattern=pattern, hints=hints)

    def describe(self) -> str:
        """``s3://bucket/pattern`` for messages."""
        return f"s3://{self.bucket}/{self.pattern}"
