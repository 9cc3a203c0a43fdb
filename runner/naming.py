"""``--schema-naming``: the column names a destination gets, as ingestr (dlt) names them.

ingestr's default normalises names with dlt's ``snake_case`` convention (``First Name`` ->
``first_name``, ``userId`` -> ``user_id``, ``123abc`` -> ``_123abc``, ``name_`` -> ``namex``);
``direct`` keeps them as the source wrote them. Two source columns that normalise to the same
name would collide: the later ones get ``_1``, ``_2``, ... (dlt refuses such Arrow tables and
ingestr's Go release merges the columns; a suffix loses no data). Names already starting with
``_dlt_`` (the bookkeeping columns) are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum

from kingest.runner.errors import UsageError

# dlt's snake_case rules (dlt/common/normalizers/naming/snake_case.py), re-expressed.
_REDUCE_ALPHABET = str.maketrans("+-*@|", "x_xal")
_NON_ALPHANUMERIC = re.compile(r"[^a-zA-Z\d_]+")
_BREAK_BEFORE_WORD = re.compile(r"([^_])([A-Z][a-z]+)")
_BREAK_AFTER_LOWER = re.compile(r"([a-z0-9])([A-Z])")
_LEADING_DIGITS = re.compile(r"^\d+")
_UNDERSCORES = re.compile(r"__+")
_PATH_SEPARATOR = "__"


class Naming(StrEnum):
    """The ``--schema-naming`` values."""

    SNAKE_CASE = "snake_case"
    DIRECT = "direct"

    @classmethod
    def parse(cls, value: str | None) -> Naming:
        """``default`` (and no value) is ingestr's default, snake_case."""
        word = (value or "default").strip().lower()
        if word == "default":
            return cls.SNAKE_CASE
        try:
            return cls(word)
        except ValueError:
            raise UsageError(
                f"--schema-naming {value!r}: expected default (snake_case) or direct"
            ) from None


def _snake_identifier(identifier: str) -> str:
    name = _NON_ALPHANUMERIC.sub("_", identifier.translate(_REDUCE_ALPHABET))
    name = _BREAK_BEFORE_WORD.sub(r"\1_\2", name)
    name = _BREAK_AFTER_LOWER.sub(r"\1_\2", name).lower()
    if _LEADING_DIGITS.match(name):
        name = "_" + name
    stripped = name.rstrip("_")
    name = stripped + "x" * (len(name) - len(stripped))
    return _UNDERSCORES.sub("_", name)


def snake_case(name: str) -> str:
    """``name`` in dlt's snake_case; ``__`` (dlt's nesting separator) is kept between parts."""
    name = name.strip()
    # Trailing underscores become "x" before the split (ingestr's Go release: "a__" is "axx";
    # dlt's path split would drop them and give "a").
    stripped = name.rstrip("_")
    name = stripped + "x" * (len(name) - len(stripped))
    parts = [p for p in name.split(_PATH_SEPARATOR) if p.strip()]
    if not parts:
        return name
    return _PATH_SEPARATOR.join(_snake_identifier(p.strip()) for p in parts)


def normalize(name: str, naming: Naming) -> str:
    """One name as the destination gets it (bookkeeping ``_dlt_`` names pass unchanged)."""
    if naming is Naming.DIRECT or name.startswith("_dlt_"):
        return name
    return snake_case(name)


def destination_names(names: Sequence[str], naming: Naming) -> list[str]:
    """The destination's names for ``names``, in order, made unique with ``_1``, ``_2``..."""
    result: list[str] = []
    taken: set[str] = set()
    for name in names:
        candidate = base = normalize(name, naming)
        suffix = 0
        while candidate in taken:
            suffix += 1
            candidate = f"{base}_{suffix}"
        taken.add(candidate)
        result.append(candidate)
    return result
