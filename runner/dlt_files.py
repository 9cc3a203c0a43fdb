"""dlt's filesystem-destination bookkeeping objects, built purely as (key, bytes) pairs.

The S3 destination writes these next to the table files so that a dlt pipeline (or a person)
reading the dataset sees what dlt itself would have written (dlt's
``destinations/impl/filesystem/filesystem.py``):

- ``init``: ``{"initial_version": 2, "current_version": 2}`` - the storage version marker.
- ``_dlt_version/<schema_name>__<schema_id>__<hex version hash>.jsonl``: one JSON object with
  ``version_hash``, ``schema_name``, ``version``, ``engine_version``, ``inserted_at`` and
  ``schema`` (the whole stored schema as a JSON string); written only when the schema with that
  hash is not stored yet.
- ``_dlt_pipeline_state/<pipeline_name>__<load_id>__<hex version hash>.jsonl``: the pipeline
  state document (``version``, ``engine_version``, ``pipeline_name``, ``state`` - zlib+base64 of
  the state JSON -, ``created_at``, ``version_hash``, ``_dlt_load_id``).
- ``_dlt_loads/<schema_name>__<load_id>.jsonl``: ``load_id``, ``schema_name``, ``status`` (0),
  ``inserted_at``, ``schema_version_hash``. Written last: it is the load's commit marker.

Keys are relative to the dataset root. As in ingestr, the pipeline is named after the
``--dest-table`` (sha256 hex) and its schema after the pipeline, as dlt normalises schema names
(:func:`schema_name_for`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from kingest.runner import dlt_state
from kingest.runner.layout import LoadStamp

INIT_KEY = "init"
LOADS_FOLDER = "_dlt_loads"
STATE_FOLDER = "_dlt_pipeline_state"
VERSION_FOLDER = "_dlt_version"
STORAGE_VERSION = 2
SCHEMA_ENGINE_VERSION = 11
SEPARATOR = "__"

Json = dict[str, Any]


@dataclass(frozen=True)
class DltObject:
    """One bookkeeping object: its key below the dataset root and its exact bytes."""

    key: str
    body: bytes


def pipeline_name_for(dest_table: str) -> str:
    """ingestr's pipeline name for a destination table: the sha256 hex of ``--dest-table``."""
    return hashlib.sha256(dest_table.encode("utf-8")).hexdigest()


# dlt's schema names: snake_case identifiers of at most 64 characters (normalize_schema_name).
_SCHEMA_NAME_MAX = 64
_TAG_BYTES = 4  # dlt's tag for a collision probability of 0.001
_TAG_ALPHABET = bytes.maketrans(b"/+", b"ab")


def schema_name_for(dest_table: str) -> str:
    """The dlt schema ingestr's pipeline for ``--dest-table`` uses: the pipeline name as dlt's
    snake_case normalises it. A hex name starting with a digit gets dlt's leading ``_``, which
    makes it 65 characters, so dlt shortens it with a tag of the original name in the middle
    (``_1437c9...x15wag...``). Names ``_dlt_loads`` / ``_dlt_version`` entries, and the key of
    the pipeline's source in its state."""
    return normalized_schema_name(pipeline_name_for(dest_table))


def normalized_schema_name(name: str) -> str:
    """dlt's ``normalize_schema_name`` of a lower-case hex name (all a pipeline name holds)."""
    normalized = f"_{name}" if name[0].isdigit() else name
    if len(normalized) <= _SCHEMA_NAME_MAX:
        return normalized
    digest = hashlib.shake_128(name.encode("utf-8")).digest(_TAG_BYTES)
    tag = base64.b64encode(digest).rstrip(b"=").translate(_TAG_ALPHABET).lower().decode("ascii")
    keep = _SCHEMA_NAME_MAX - len(tag)
    head = keep // 2 + keep % 2
    return normalized[:head] + tag + normalized[len(normalized) - keep // 2 :]


def _dumps(doc: Json) -> bytes:
    return json.dumps(doc, separators=(",", ":"), default=_json_default).encode("utf-8")


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def schema_version_hash(stored: Json) -> str:
    """dlt's ``version_hash`` of a stored schema (``generate_version_hash``), bit for bit.

    sha3-256 over the compact, key-sorted JSON of the schema without its version fields,
    then over every table name (sorted) followed by its column names in order, base64.
    """
    content = {
        k: v
        for k, v in stored.items()
        if k not in ("version", "version_hash", "imported_version_hash", "previous_hashes")
    }
    digest = hashlib.sha3_256(
        json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    tables = content.get("tables") or {}
    for table_name in sorted(tables):
        digest.update(table_name.encode("utf-8"))
        for column_name in tables[table_name].get("columns") or {}:
            digest.update(column_name.encode("utf-8"))
    return base64.b64encode(digest.digest()).decode("ascii")


def path_safe_hash(version_hash: str) -> str:
    """The hex form dlt uses for a base64 version hash inside file names."""
    return base64.b64decode(version_hash).hex()


def _arrow_to_dlt_column(field: pa.Field) -> Json:
    t = field.type
    column: Json = {"name": field.name, "nullable": field.nullable}
    if pa.types.is_boolean(t):
        column["data_type"] = "bool"
    elif pa.types.is_integer(t):
        column["data_type"] = "bigint"
        if t.bit_width < 64:
            column["precision"] = t.bit_width
    elif pa.types.is_floating(t):
        column["data_type"] = "double"
    elif pa.types.is_decimal(t):
        column |= {"data_type": "decimal", "precision": t.precision, "scale": t.scale}
    elif pa.types.is_timestamp(t):
        column["data_type"] = "timestamp"
        column["precision"] = {"s": 0, "ms": 3, "us": 6, "ns": 9}[t.unit]
        column["timezone"] = t.tz is not None
    elif pa.types.is_date(t):
        column["data_type"] = "date"
    elif pa.types.is_time(t):
        column["data_type"] = "time"
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        column["data_type"] = "binary"
    elif pa.types.is_nested(t):
        column["data_type"] = "json"
    else:
        column["data_type"] = "text"
    return column


DLT_ID_BYTES = 10
"""dlt's ``_dlt_id``: 10 random bytes in standard base64 without padding (14 characters)."""


def dlt_id_bytes(count: int) -> pa.Array:
    """The random bytes of ``count`` fresh ``_dlt_id`` values (crypto-grade, as dlt's), as
    ``fixed_size_binary(10)``: :func:`dlt_id_sql` makes them ids where they are stored.

    Handed over as they come from the system (no copy): DuckDB's vectorised base64 encodes
    2M ids in a fraction of what encoding them here cost (0.15-0.2 CPU-seconds).
    """
    random = secrets.token_bytes(count * DLT_ID_BYTES)
    return pa.Array.from_buffers(pa.binary(DLT_ID_BYTES), count, [None, pa.py_buffer(random)])


def dlt_id_sql(column: str) -> str:
    """DuckDB SQL turning the (quoted) ``column`` of :func:`dlt_id_bytes` into ``_dlt_id``
    text: base64 without its ``==`` padding, 14 characters."""
    return f"left(to_base64({column}), 14)"


def dlt_data_type(field: pa.Field) -> str:
    """The dlt data type (``bigint``, ``text``, ...) an Arrow field is stored as."""
    return str(_arrow_to_dlt_column(field)["data_type"])


def table_schema(
    table_name: str, arrow_schema: pa.Schema, write_disposition: str, file_format: str
) -> Json:
    """dlt's schema entry for one loaded table, its columns derived from the Arrow schema."""
    return {
        "name": table_name,
        "columns": {f.name: _arrow_to_dlt_column(f) for f in arrow_schema},
        "write_disposition": write_disposition,
        "file_format": file_format,
        "resource": table_name,
        "x-normalizer": {"seen-data": True},
    }


def _col(name: str, data_type: str, nullable: bool = False, **hints: Any) -> Json:
    return {"name": name, "data_type": data_type, "nullable": nullable, **hints}


def _dlt_tables() -> Json:
    return {
        VERSION_FOLDER: {
            "name": VERSION_FOLDER,
            "columns": {
                c["name"]: c
                for c in (
                    _col("version", "bigint"),
                    _col("engine_version", "bigint"),
                    _col("inserted_at", "timestamp"),
                    _col("schema_name", "text"),
                    _col("version_hash", "text"),
                    _col("schema", "text"),
                )
            },
            "write_disposition": "skip",
            "resource": VERSION_FOLDER,
            "description": "Created by DLT. Tracks schema updates",
        },
        LOADS_FOLDER: {
            "name": LOADS_FOLDER,
            "columns": {
                c["name"]: c
                for c in (
                    _col("load_id", "text", precision=64),
                    _col("schema_name", "text", nullable=True),
                    _col("status", "bigint"),
                    _col("inserted_at", "timestamp"),
                    _col("schema_version_hash", "text", nullable=True),
                )
            },
            "write_disposition": "skip",
            "resource": LOADS_FOLDER,
            "description": "Created by DLT. Tracks completed loads",
        },
        STATE_FOLDER: {
            "name": STATE_FOLDER,
            "columns": {
                c["name"]: c
                for c in (
                    _col("version", "bigint"),
                    _col("engine_version", "bigint"),
                    _col("pipeline_name", "text"),
                    _col("state", "text"),
                    _col("created_at", "timestamp"),
                    _col("version_hash", "text", nullable=True),
                    _col("_dlt_load_id", "text", precision=64),
                    _col("_dlt_id", "text", unique=True, row_key=True),
                )
            },
            "write_disposition": "append",
            "file_format": "preferred",
            "resource": STATE_FOLDER,
            "x-normalizer": {"seen-data": True},
        },
    }


def stored_schema(schema_name: str, tables: list[Json], previous: Json | None) -> Json:
    """The stored schema after this load: ``previous`` (if any) with ``tables`` merged in.

    ``version`` and ``version_hash`` change only when the content does, as in dlt.
    """
    merged: Json = dict(previous.get("tables", {})) if previous else {}
    merged |= _dlt_tables()
    for table in tables:
        merged[table["name"]] = table
    content: Json = {
        "name": schema_name,
        "tables": merged,
        "settings": {
            "detections": ["iso_timestamp"],
            "default_hints": {
                "not_null": [
                    "_dlt_id",
                    "_dlt_root_id",
                    "_dlt_parent_id",
                    "_dlt_list_idx",
                    "_dlt_load_id",
                ],
                "parent_key": ["_dlt_parent_id"],
                "root_key": ["_dlt_root_id"],
                "unique": ["_dlt_id"],
                "row_key": ["_dlt_id"],
            },
        },
        "normalizers": {
            "names": "snake_case",
            "json": {"module": "dlt.common.normalizers.json.relational"},
        },
    }
    version_hash = schema_version_hash({"engine_version": SCHEMA_ENGINE_VERSION, **content})
    if previous and previous.get("version_hash") == version_hash:
        return previous
    previous_hashes = []
    version = 1
    if previous:
        version = int(previous.get("version", 0)) + 1
        previous_hashes = [previous["version_hash"], *previous.get("previous_hashes", [])][:10]
    return {
        "version": version,
        "version_hash": version_hash,
        "engine_version": SCHEMA_ENGINE_VERSION,
        **content,
        "previous_hashes": previous_hashes,
    }


def init_object() -> DltObject:
    """The ``init`` marker at the dataset root (storage version 2: ``.gz`` names kept)."""
    body = {"initial_version": STORAGE_VERSION, "current_version": STORAGE_VERSION}
    return DltObject(INIT_KEY, _dumps(body))


def version_object(schema: Json, stamp: LoadStamp) -> DltObject:
    """The ``_dlt_version`` entry storing ``schema``."""
    name = schema["name"]
    key = (
        f"{VERSION_FOLDER}/{name}{SEPARATOR}{stamp.load_id}{SEPARATOR}"
        f"{path_safe_hash(schema['version_hash'])}.jsonl"
    )
    doc = {
        "version_hash": schema["version_hash"],
        "schema_name": name,
        "version": schema["version"],
        "engine_version": schema["engine_version"],
        "inserted_at": stamp.started_at,
        "schema": json.dumps(schema, separators=(",", ":")),
    }
    return DltObject(key, _dumps(doc))


def version_hash_in_key(key: str) -> str | None:
    """The hex version hash in a ``_dlt_version`` object's name, or None for other names."""
    stem = key.rsplit("/", 1)[-1].removesuffix(".jsonl")
    parts = stem.rsplit(SEPARATOR, 2)
    return parts[2] if len(parts) == 3 else None


def pipeline_state_object(*, state: Json, schema: Json, stamp: LoadStamp) -> DltObject:
    """The ``_dlt_pipeline_state`` entry of this load, storing ``state`` (see
    :func:`kingest.runner.dlt_state.next_state`)."""
    doc = {
        "version": state["_state_version"],
        "engine_version": state["_state_engine_version"],
        "pipeline_name": state["pipeline_name"],
        "state": dlt_state.compress(state),
        "created_at": stamp.started_at,
        "version_hash": state["_version_hash"],
        "_dlt_load_id": stamp.load_id,
    }
    key = (
        f"{STATE_FOLDER}/{state['pipeline_name']}{SEPARATOR}{stamp.load_id}{SEPARATOR}"
        f"{path_safe_hash(schema['version_hash'])}.jsonl"
    )
    return DltObject(key, _dumps(doc))


def state_load_id(key: str) -> str | None:
    """The load id in a ``_dlt_pipeline_state`` (or ``_dlt_loads``) object's name."""
    parts = key.rsplit("/", 1)[-1].removesuffix(".jsonl").split(SEPARATOR)
    return parts[1] if len(parts) >= 2 else None


def loads_object(schema: Json, stamp: LoadStamp, inserted_at: datetime) -> DltObject:
    """The ``_dlt_loads`` entry: the commit marker of the load, written after everything else."""
    doc = {
        "load_id": stamp.load_id,
        "schema_name": schema["name"],
        "status": 0,
        "inserted_at": inserted_at,
        "schema_version_hash": schema["version_hash"],
    }
    return DltObject(
        f"{LOADS_FOLDER}/{schema['name']}{SEPARATOR}{stamp.load_id}.jsonl", _dumps(doc)
    )
