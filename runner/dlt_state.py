"""dlt's pipeline state: the document ``_dlt_pipeline_state`` stores, and the cursors in it.

A state is a JSON object (``_state_version``, ``_state_engine_version``, ``pipeline_name``,
``sources``, ...) encoded the way dlt encodes it (``dlt/common/versioned_state.py``): dlt's
*typed* JSON, where a datetime is the text ``"\\uf027" + isoformat()``, a date ``"\\uf028" + ...``,
a decimal ``"\\uf026" + str(value)`` (characters of Unicode's private use area), compressed with
zlib (level 9) and base64. Its ``_version_hash`` is the sha3-256 of the key-sorted typed JSON
without the version fields, and ``_state_version`` moves only when that hash does.

An incremental cursor lives at ``sources -> <source> -> resources -> <resource> -> incremental
-> <cursor column>`` as ``{initial_value, last_value, unique_hashes}`` (dlt 1.21's
``IncrementalColumnState``). As ingestr 0.14 runs it, the source is named after the pipeline's
schema (the sha256 of ``--dest-table``, normalised as dlt normalises schema names) and the
resource after the source table (``users`` for ``public.users``; ``custom`` for a ``query:``).

The boundary rows' ``unique_hashes`` are dlt's ``digest128`` (base64 shake-128, 15 bytes) of
the row as orjson writes it with sorted keys: the primary key value(s) when there is one, else
the whole row. :func:`row_hash` writes JSON as orjson does for the types a SQL row holds.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

STATE_ENGINE_VERSION = 4

Json = dict[str, Any]

# dlt's typed-JSON markers (dlt/common/json/__init__.py, PUA_START 0xf026).
_DECIMAL = "\uf026"
_DATETIME = "\uf027"
_DATE = "\uf028"
_TIME = "\uf02d"
_B64BYTES = "\uf02b"


def _typed(value: Any) -> Any:
    """``value`` with every typed scalar replaced by its dlt typed-JSON text."""
    if isinstance(value, Mapping):
        return {str(k): _typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_typed(v) for v in value]
    if isinstance(value, Decimal):
        return _DECIMAL + str(value)
    if isinstance(value, datetime):
        return _DATETIME + value.isoformat()
    if isinstance(value, date):
        return _DATE + value.isoformat()
    if isinstance(value, time):
        return _TIME + value.isoformat()
    if isinstance(value, bytes):
        return _B64BYTES + base64.b64encode(value).decode("ascii")
    return value


_DECODERS = {
    _DECIMAL: Decimal,
    _DATETIME: lambda text: (
        datetime.fromisoformat(text.removesuffix("Z") + "+00:00")
        if text.endswith("Z")
        else datetime.fromisoformat(text)
    ),
    _DATE: date.fromisoformat,
    _TIME: time.fromisoformat,
    _B64BYTES: base64.b64decode,
}


def _untyped(value: Any) -> Any:
    """The inverse of :func:`_typed`: typed-JSON texts back to Python values."""
    if isinstance(value, dict):
        return {k: _untyped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untyped(v) for v in value]
    if isinstance(value, str) and value and value[0] in _DECODERS:
        return _DECODERS[value[0]](value[1:])
    return value


def typed_dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """dlt's ``json.typed_dumpb``: compact UTF-8 JSON with typed scalars marked."""
    return json.dumps(
        _typed(value), sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def compress(state: Json) -> str:
    """The ``state`` column's text: base64 of zlib (level 9) of the typed JSON."""
    return base64.b64encode(zlib.compress(typed_dumps(state), level=9)).decode("ascii")


def decompress(text: str) -> Json | None:
    """A stored ``state`` column back to the state (None if it is not a state document)."""
    try:
        raw = zlib.decompress(base64.b64decode(text, validate=True))
    except (binascii.Error, zlib.error, ValueError):
        raw = text.encode("utf-8")  # dlt also accepts uncompressed JSON
    try:
        state = _untyped(json.loads(raw))
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def version_hash(state: Json) -> str:
    """dlt's ``_version_hash``: sha3-256 of the sorted typed JSON without version fields."""
    content = {
        k: v
        for k, v in state.items()
        if k not in ("_state_version", "_state_engine_version", "_version_hash", "_local")
    }
    return base64.b64encode(hashlib.sha3_256(typed_dumps(content, sort_keys=True)).digest()).decode(
        "ascii"
    )


# -- cursors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CursorState:
    """One incremental cursor as dlt stores it: the highest value loaded so far, and the
    hashes of the rows holding exactly that value (loaded already, so skipped next time)."""

    last_value: Any = None
    unique_hashes: tuple[str, ...] = ()
    initial_value: Any = None

    def to_dlt(self) -> Json:
        """The ``{initial_value, last_value, unique_hashes}`` object of dlt's state."""
        return {
            "initial_value": self.initial_value,
            "last_value": self.last_value,
            "unique_hashes": list(self.unique_hashes),
        }

    @classmethod
    def from_dlt(cls, doc: Any) -> CursorState | None:
        """Read dlt's object; None when it holds no last value."""
        if not isinstance(doc, dict) or doc.get("last_value") is None:
            return None
        hashes = doc.get("unique_hashes") or []
        return cls(doc["last_value"], tuple(str(h) for h in hashes), doc.get("initial_value"))


@dataclass(frozen=True)
class CursorAddress:
    """Where a cursor lives in a pipeline's state."""

    source: str
    resource: str
    column: str


def cursor_in(state: Json | None, address: CursorAddress) -> CursorState | None:
    """The cursor stored at ``address`` in ``state`` (None if the state holds none)."""
    node: Any = state or {}
    for step in ("sources", address.source, "resources", address.resource, "incremental"):
        node = node.get(step) if isinstance(node, dict) else None
    return CursorState.from_dlt(node.get(address.column)) if isinstance(node, dict) else None


def next_state(
    previous: Json | None,
    *,
    pipeline_name: str,
    schema_name: str,
    dataset_name: str,
    destination_type: str,
    cursor: tuple[CursorAddress, CursorState] | None = None,
) -> Json:
    """The state this load stores: ``previous`` (None: a fresh one) with ``cursor`` set.

    Everything ``previous`` holds (other resources' cursors too) carries over, as dlt keeps
    it; ``_state_version`` moves only when the content changes.
    """
    sources: Json = copy.deepcopy((previous or {}).get("sources") or {})
    sources.setdefault(schema_name, {})
    if cursor is not None:
        address, value = cursor
        resources = sources.setdefault(address.source, {}).setdefault("resources", {})
        incremental = resources.setdefault(address.resource, {}).setdefault("incremental", {})
        incremental[address.column] = value.to_dlt()
    state: Json = {
        "_state_version": int((previous or {}).get("_state_version") or 1),
        "_state_engine_version": STATE_ENGINE_VERSION,
        "pipeline_name": pipeline_name,
        "dataset_name": dataset_name,
        "default_schema_name": schema_name,
        "schema_names": [schema_name],
        "destination_type": destination_type,
        "destination_name": None,
        "sources": sources,
    }
    state["_version_hash"] = version_hash(state)
    if previous and previous.get("_version_hash") not in (None, state["_version_hash"]):
        state["_state_version"] += 1
    return state


# -- row hashes (dlt's unique_hashes) --------------------------------------------------------


def _orjson_text(value: Any) -> Any:
    """A value as orjson (with dlt's options: UTC as ``Z``) puts it in JSON."""
    if isinstance(value, datetime):
        text = value.isoformat()
        if value.utcoffset() is not None and value.utcoffset().total_seconds() == 0:  # type: ignore[union-attr]
            text = text.removesuffix("+00:00") + "Z"
        return text
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None  # orjson writes NaN and infinities as null
    if isinstance(value, Mapping):
        return {str(k): _orjson_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_orjson_text(v) for v in value]
    return value


def digest128(text: str) -> str:
    """dlt's ``digest128``: base64 of 15 bytes of shake-128, without padding."""
    digest = hashlib.shake_128(text.encode("utf-8")).digest(15)
    return base64.b64encode(digest).decode("ascii").rstrip("=")


def row_hash(value: Any) -> str:
    """dlt's unique hash of a boundary row: ``digest128`` of its sorted, compact JSON."""
    text = json.dumps(
        _orjson_text(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return digest128(text)
