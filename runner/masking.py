"""``--mask column:algorithm[:param]``: ingestr's masking, applied to the Arrow stream.

Every algorithm of ingestr's data-masking page, with the output types of ingestr's Go
release (hashes and text masks give text; ``round``, ``sequential`` and ``year_only`` give
integers; ``random`` and ``noise`` keep a numeric type; ``date_shift`` keeps a date or
timestamp type). Nulls stay null. Masks run batch by batch before a destination sees any row,
so no unmasked value is ever written.

Speed: arithmetic, date and constant masks are pyarrow compute kernels over whole columns;
sha256 and md5 are DuckDB's vectorised functions. Masks that need Python per value (hmac,
tokens, the format-preserving ones) run once per *distinct* value of a batch (a dictionary
encoding), and ``uuid`` / ``sequential`` keep their tokens for the whole run, so one value maps
to one token everywhere.

Bad flags fail before any I/O (unknown algorithm, a parameter that is not a number, ``hmac``
without its key); a masked column the source does not have fails before anything is written.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import string
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kingest.runner.errors import UsageError

_NON_DIGITS = re.compile(r"\D")
_ALNUM = string.ascii_letters + string.digits

# Algorithm -> (parameter kind, default parameter). Kind: "none", "int", "float", "text".
_PARAMETERS: dict[str, tuple[str, object]] = {
    "hash": ("none", None),
    "sha256": ("none", None),
    "md5": ("none", None),
    "hmac": ("text", None),
    "email": ("none", None),
    "phone": ("none", None),
    "credit_card": ("none", None),
    "ssn": ("none", None),
    "redact": ("none", None),
    "stars": ("none", None),
    "fixed": ("text", "MASKED"),
    "random": ("none", None),
    "partial": ("int", 2),
    "first_letter": ("none", None),
    "uuid": ("none", None),
    "sequential": ("none", None),
    "round": ("float", 10.0),
    "range": ("float", 100.0),
    "noise": ("float", 0.1),
    "date_shift": ("int", 30),
    "year_only": ("none", None),
    "month_year": ("none", None),
}
ALGORITHMS = tuple(_PARAMETERS)


@dataclass(frozen=True)
class Mask:
    """One ``--mask`` value, parsed and checked."""

    column: str
    algorithm: str
    param: object = None

    @classmethod
    def parse(cls, value: str) -> Mask:
        """``column:algorithm[:param]`` (the parameter may itself contain ``:``)."""
        column, _, rest = value.partition(":")
        algorithm, has_param, raw = rest.partition(":")
        column, algorithm = column.strip(), algorithm.strip().lower()
        if not column or not algorithm:
            raise UsageError(f"--mask {value!r}: expected 'column:algorithm[:param]'")
        if algorithm not in _PARAMETERS:
            raise UsageError(
                f"--mask {value!r}: unknown algorithm {algorithm!r} for column {column!r}; "
                f"known: {', '.join(ALGORITHMS)}"
            )
        kind, default = _PARAMETERS[algorithm]
        if not has_param or raw == "":
            if algorithm == "hmac":
                raise UsageError(f"--mask {value!r}: hmac needs a key: '{column}:hmac:KEY'")
            return cls(column, algorithm, default)
        return cls(column, algorithm, _parameter(value, algorithm, kind, raw))


def _parameter(value: str, algorithm: str, kind: str, raw: str) -> object:
    if kind == "none":
        raise UsageError(f"--mask {value!r}: {algorithm} takes no parameter")
    if kind == "text":
        return raw
    try:
        number = int(raw) if kind == "int" else float(raw)
    except ValueError:
        raise UsageError(f"--mask {value!r}: the {algorithm} parameter must be a number") from None
    if number <= 0 and algorithm != "noise":
        raise UsageError(f"--mask {value!r}: the {algorithm} parameter must be above 0")
    return number


def parse_masks(values: Sequence[str]) -> tuple[Mask, ...]:
    """All ``--mask`` values (each may list several, comma-separated, as ``INGESTR_MASK``)."""
    masks: list[Mask] = []
    for value in values:
        for item in _split_items(value):
            mask = Mask.parse(item)
            if any(m.column == mask.column for m in masks):
                raise UsageError(f"--mask: column {mask.column!r} is masked twice")
            masks.append(mask)
    return tuple(masks)


def _split_items(value: str) -> list[str]:
    """Split on commas that start a new ``column:algorithm`` item (a fixed value or an hmac
    key may contain commas: ``a:fixed:x,y`` stays one item)."""
    items: list[str] = []
    for part in value.split(","):
        head = part.partition(":")[2].partition(":")[0].strip().lower()
        if items and head not in _PARAMETERS:
            items[-1] += "," + part
        else:
            items.append(part)
    return [item.strip() for item in items if item.strip()]


# -- column helpers ------------------------------------------------------------------------


def _is_integer(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _is_temporal(t: pa.DataType) -> bool:
    return pa.types.is_date(t) or pa.types.is_timestamp(t)


def _as_text(column: pa.Array) -> pa.Array:
    """The value's text form, as ingestr masks it (numbers and dates as written)."""
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_large_string(column.type) or pa.types.is_dictionary(column.type):
        return column.cast(pa.string())
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        return pc.cast(column, pa.string(), safe=False)
    return pc.cast(column, pa.string())


def _per_distinct(column: pa.Array, fn: Callable[[str], object], out: pa.DataType) -> pa.Array:
    """``fn`` on each distinct non-null text value once; nulls stay null."""
    encoded = pc.dictionary_encode(_as_text(column))
    mapped = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], out)
    return pc.take(mapped, encoded.indices)


def _stars(lengths: pa.Array) -> pa.Array:
    return pc.binary_repeat(pa.scalar("*"), lengths)


def _keep_nulls(column: pa.Array, masked: pa.Array) -> pa.Array:
    return pc.if_else(pc.is_null(column), pa.scalar(None, masked.type), masked)


def _numbers(column: pa.Array) -> pa.Array:
    """The column as float64; text that is no number becomes null (as in ingestr)."""
    if _is_number(column.type):
        return pc.cast(column, pa.float64())
    return _per_distinct(column, _float_or_none, pa.float64())


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _dates(column: pa.Array) -> pa.Array:
    """The column as timestamps (text parsed as ISO dates/timestamps; others null)."""
    if _is_temporal(column.type):
        return pc.cast(column, pa.timestamp("us", tz=getattr(column.type, "tz", None)))
    return _per_distinct(column, _datetime_or_none, pa.timestamp("us"))


def _datetime_or_none(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=None)


# -- the algorithms --------------------------------------------------------------------------


def _hash(function: str) -> Callable[[pa.Array, Mask, MaskState], pa.Array]:
    """sha256 / md5 hex digests by DuckDB's vectorised functions (2-4x Python's hashlib per
    value, measured on 1M e-mail addresses)."""

    def apply(column: pa.Array, mask: Mask, state: MaskState) -> pa.Array:
        texts = pa.table({"v": _as_text(column)})  # noqa: F841 (read by the query below)
        result = state.sql.sql(f"SELECT {function}(v) FROM texts").to_arrow_table()
        return result.column(0).combine_chunks()

    return apply


def _hmac(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    key = str(mask.param).encode()
    return _per_distinct(
        column, lambda v: hmac.new(key, v.encode(), hashlib.sha256).hexdigest(), pa.string()
    )


def _partial_text(text: str, keep: int) -> str:
    if len(text) <= keep * 2:
        return "*" * len(text)
    return text[:keep] + "*" * (len(text) - keep * 2) + text[-keep:]


def _email_text(text: str) -> str:
    local, at, domain = text.partition("@")
    if not at:
        return _partial_text(text, 2)
    if len(local) <= 2:
        return "*" * len(local) + at + domain
    return local[0] + "*" * (len(local) - 2) + local[-1] + at + domain


def _phone_text(text: str) -> str:
    digits = _NON_DIGITS.sub("", text)
    return "*" * len(digits) if len(digits) < 10 else digits[:3] + "-***-****"


def _card_text(text: str) -> str:
    digits = _NON_DIGITS.sub("", text)
    return "*" * len(digits) if len(digits) < 12 else "*" * (len(digits) - 4) + digits[-4:]


def _ssn_text(text: str) -> str:
    digits = _NON_DIGITS.sub("", text)
    return "*" * len(digits) if len(digits) != 9 else "***-**-" + digits[-4:]


def _first_letter_text(text: str) -> str:
    return text if len(text) <= 1 else text[0] + "*" * (len(text) - 1)


def _text_mask(fn: Callable[[str], str]) -> Callable[[pa.Array, Mask, MaskState], pa.Array]:
    def apply(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
        return _per_distinct(column, fn, pa.string())

    return apply


def _partial(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    keep = int(mask.param)  # type: ignore[call-overload]
    return _per_distinct(column, lambda v: _partial_text(v, keep), pa.string())


def _constant(column: pa.Array, text: str) -> pa.Array:
    return _keep_nulls(column, pa.array([text] * len(column), pa.string()))


def _redact(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    return _constant(column, "REDACTED")


def _fixed(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    return _constant(column, str(mask.param))


def _star_mask(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    return _stars(pc.utf8_length(_as_text(column)))


def _uuid(column: pa.Array, mask: Mask, state: MaskState) -> pa.Array:
    tokens = state.tokens.setdefault(mask.column, {})

    def token(value: str) -> object:
        found = tokens.get(value)
        if found is None:
            found = tokens[value] = str(uuid.uuid4())
        return found

    return _per_distinct(column, token, pa.string())


def _sequential(column: pa.Array, mask: Mask, state: MaskState) -> pa.Array:
    numbers = state.tokens.setdefault(mask.column, {})
    # A dictionary encoding lists values in order of first appearance: 1, 2, 3... as read.
    return _per_distinct(column, lambda v: numbers.setdefault(v, len(numbers) + 1), pa.int64())


def _round(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    step = float(mask.param)  # type: ignore[arg-type]
    rounded = pc.round(pc.divide(_numbers(column), step), round_mode="half_towards_infinity")
    return pc.cast(pc.multiply(rounded, step), pa.int64(), safe=False)


def _range(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    width = float(mask.param)  # type: ignore[arg-type]
    step = int(width)
    lower = pc.multiply(pc.cast(pc.floor(pc.divide(_numbers(column), width)), pa.int64()), step)
    upper = pc.add(lower, step)
    return pc.binary_join_element_wise(
        pc.cast(lower, pa.string()), pc.cast(upper, pa.string()), "-"
    )


def _signed_unit(n: int) -> pa.Array:
    """Uniform random values in [-1, 1)."""
    return pc.subtract(pc.multiply(pc.random(n), 2.0), 1.0)


def _noise(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    values = _numbers(column)
    magnitude = pc.abs(values)
    magnitude = pc.if_else(pc.equal(magnitude, 0.0), 1.0, magnitude)
    level = float(mask.param)  # type: ignore[arg-type]
    noisy = pc.add(values, pc.multiply(pc.multiply(_signed_unit(len(column)), level), magnitude))
    return _numeric_like(column, noisy)


def _numeric_like(column: pa.Array, values: pa.Array) -> pa.Array:
    """float64 results in the input's kind: integers truncated, text as text."""
    if _is_integer(column.type):
        return pc.cast(pc.trunc(values), pa.int64())
    if _is_number(column.type):
        return values
    return pc.cast(values, pa.string())


def _random(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    if _is_integer(column.type):
        digits = pc.utf8_length(pc.cast(pc.abs(pc.cast(column, pa.int64())), pa.string()))
        low = pc.power(10.0, pc.subtract(pc.cast(digits, pa.float64()), 1.0))
        drawn = pc.floor(pc.add(low, pc.multiply(pc.random(len(column)), pc.multiply(low, 9.0))))
        return _keep_nulls(column, pc.cast(drawn, pa.int64()))
    if _is_number(column.type):
        magnitude = pc.abs(pc.cast(column, pa.float64()))
        magnitude = pc.if_else(pc.equal(magnitude, 0.0), 1.0, magnitude)
        return pc.multiply(pc.multiply(pc.random(len(column)), 2.0), magnitude)
    texts = _as_text(column).to_pylist()
    return pa.array(
        [None if t is None else "".join(secrets.choice(_ALNUM) for _ in t) for t in texts],
        pa.string(),
    )


def _date_shift(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    days = int(mask.param)  # type: ignore[call-overload]
    shift = pc.cast(pc.floor(pc.multiply(pc.random(len(column)), 2 * days + 1)), pa.int64())
    shift_us = pc.multiply(pc.subtract(shift, days), 86_400_000_000)
    moments = _dates(column)
    shifted = pc.cast(
        pc.add(pc.cast(moments, pa.int64()), shift_us), pa.timestamp("us", tz=moments.type.tz)
    )
    if _is_temporal(column.type):
        return pc.cast(shifted, column.type)
    return pc.strftime(shifted, "%Y-%m-%d")


def _year_only(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    return pc.cast(pc.year(_dates(column)), pa.int64())


def _month_year(column: pa.Array, mask: Mask, _: MaskState) -> pa.Array:
    return pc.strftime(_dates(column), "%Y-%m")


@dataclass
class MaskState:
    """What masks remember across batches: one token per value for uuid and sequential, and
    an in-memory DuckDB for the hashes."""

    tokens: dict[str, dict[str, object]] = field(default_factory=dict)

    @functools.cached_property
    def sql(self) -> Any:
        """A private in-memory DuckDB, made on first use (an S3 -> S3 run without hash masks
        never imports DuckDB)."""
        import duckdb

        return duckdb.connect(":memory:")


_APPLY: dict[str, Callable[[pa.Array, Mask, MaskState], pa.Array]] = {
    "hash": _hash("sha256"),
    "sha256": _hash("sha256"),
    "md5": _hash("md5"),
    "hmac": _hmac,
    "email": _text_mask(_email_text),
    "phone": _text_mask(_phone_text),
    "credit_card": _text_mask(_card_text),
    "ssn": _text_mask(_ssn_text),
    "redact": _redact,
    "stars": _star_mask,
    "fixed": _fixed,
    "random": _random,
    "partial": _partial,
    "first_letter": _text_mask(_first_letter_text),
    "uuid": _uuid,
    "sequential": _sequential,
    "round": _round,
    "range": _range,
    "noise": _noise,
    "date_shift": _date_shift,
    "year_only": _year_only,
    "month_year": _month_year,
}
assert set(_APPLY) == set(_PARAMETERS)


class Masker:
    """Applies a run's masks to each batch of one stream."""

    def __init__(self, masks: Sequence[Mask], schema: pa.Schema) -> None:
        missing = [m.column for m in masks if m.column not in schema.names]
        if missing:
            raise UsageError(
                f"--mask: {', '.join(repr(c) for c in missing)} not a column of the source "
                f"(columns: {', '.join(schema.names)})"
            )
        self._masks = {m.column: m for m in masks}
        self._state = MaskState()
        empty = pa.RecordBatch.from_pylist([], schema=schema)
        self.schema = self.apply(empty).schema

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with its masked columns replaced."""
        columns = []
        fields = []
        for f, column in zip(batch.schema, batch.columns, strict=True):
            mask = self._masks.get(f.name)
            if mask is not None:
                column = _APPLY[mask.algorithm](column, mask, self._state)
                if isinstance(column, pa.ChunkedArray):
                    column = column.combine_chunks()
                f = pa.field(f.name, column.type, nullable=True)
            columns.append(column)
            fields.append(f)
        return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))
