"""The `_dlt_*` objects: same hashes and fields as dlt itself writes.

The golden files in ``data/`` are the `_dlt_version` and `_dlt_pipeline_state` objects that
ingestr 0.14.155 (dlt 1.21) wrote for `--dest-table my-bucket/records` from a DuckDB table
`public.users` (id bigint, name text), against the test platform's S3 server.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from kingest.runner import dlt_files, dlt_state
from kingest.runner.layout import LoadStamp
from tests.platform.venvs import python_with

DATA = Path(__file__).parent / "data"
STAMP = LoadStamp("1795592176.583179", datetime(2026, 11, 25, 7, 36, 16, tzinfo=UTC))


def golden(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"ingestr-0.14.155-{name}.json").read_text())


def test_schema_hash_is_dlts() -> None:
    version = golden("_dlt_version")
    schema = json.loads(version["schema"])
    assert dlt_files.schema_version_hash(schema) == version["version_hash"]


def test_state_hash_is_dlts() -> None:
    doc = golden("_dlt_pipeline_state")
    state = json.loads(zlib.decompress(base64.b64decode(doc["state"])))
    assert dlt_state.version_hash(state) == doc["version_hash"] == state["_version_hash"]


def test_pipeline_is_named_like_ingestrs() -> None:
    doc = golden("_dlt_pipeline_state")
    assert dlt_files.pipeline_name_for("my-bucket/records") == doc["pipeline_name"]


def test_schema_names_are_normalised_as_dlt_does() -> None:
    # Pipeline and schema names ingestr 0.14.155 wrote: a hex name starting with a digit gets
    # dlt's "_" and, then 65 characters long, a tag in the middle.
    for pipeline, schema in (
        (
            "1437c972f9404ad849986c1ad7885b66ab393a9d316fb7602455d59a27d836e1",
            "_1437c972f9404ad849986c1ad788x15wag93a9d316fb7602455d59a27d836e1",
        ),
        (
            "7cd18c6ae4133404c1679076b1a648758dbf77d573283d208f7cd4dd260587f3",
            "_7cd18c6ae4133404c1679076b1a6a2sp3af77d573283d208f7cd4dd260587f3",
        ),
        (golden("_dlt_pipeline_state")["pipeline_name"], golden("_dlt_version")["schema_name"]),
    ):
        assert dlt_files.normalized_schema_name(pipeline) == schema


def users_schema(previous: dict[str, Any] | None = None) -> dict[str, Any]:
    arrow = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])
    table = dlt_files.table_schema("users", arrow, "replace", "parquet")
    return dlt_files.stored_schema(
        dlt_files.pipeline_name_for("my-bucket/records"), [table], previous
    )


def test_stored_schema_has_dlts_shape_and_a_matching_hash() -> None:
    ours = users_schema()
    theirs = json.loads(golden("_dlt_version")["schema"])

    assert dlt_files.schema_version_hash(ours) == ours["version_hash"]
    assert set(ours) == set(theirs)
    for name in ("_dlt_version", "_dlt_loads", "_dlt_pipeline_state"):
        assert ours["tables"][name]["columns"] == theirs["tables"][name]["columns"], name
        assert (
            ours["tables"][name]["write_disposition"] == theirs["tables"][name]["write_disposition"]
        )
    assert ours["settings"] == theirs["settings"]
    assert ours["normalizers"] == theirs["normalizers"]
    # ingestr names its table after the dataset ("records"); ours is the source's ("users").
    assert ours["tables"]["users"]["columns"] == theirs["tables"]["records"]["columns"]


def test_schema_version_moves_only_when_the_content_does() -> None:
    first = users_schema()
    assert users_schema(first) is first

    orders = dlt_files.table_schema("orders", pa.schema([("total", pa.float64())]), "append", "csv")
    second = dlt_files.stored_schema(first["name"], [orders], first)
    assert second["version"] == 2
    assert second["previous_hashes"] == [first["version_hash"]]
    assert {"users", "orders"} <= set(second["tables"])


def state_object(pipeline_name: str, schema: dict[str, Any]) -> dlt_files.DltObject:
    """The ``_dlt_pipeline_state`` entry of a fresh pipeline state."""
    state = dlt_state.next_state(
        None,
        pipeline_name=pipeline_name,
        schema_name=schema["name"],
        dataset_name="records",
        destination_type="dlt.destinations.filesystem",
    )
    return dlt_files.pipeline_state_object(state=state, schema=schema, stamp=STAMP)


def test_object_names_follow_dlts_patterns() -> None:
    schema = users_schema()
    hex_hash = base64.b64decode(schema["version_hash"]).hex()
    name = schema["name"]

    version = dlt_files.version_object(schema, STAMP)
    state = state_object(name, schema)
    loads = dlt_files.loads_object(schema, STAMP, inserted_at=STAMP.started_at)

    assert version.key == f"_dlt_version/{name}__{STAMP.load_id}__{hex_hash}.jsonl"
    assert state.key == f"_dlt_pipeline_state/{name}__{STAMP.load_id}__{hex_hash}.jsonl"
    assert loads.key == f"_dlt_loads/{name}__{STAMP.load_id}.jsonl"
    assert dlt_files.init_object().body == b'{"initial_version":2,"current_version":2}'
    assert dlt_files.version_hash_in_key(version.key) == hex_hash


def test_state_and_loads_documents_have_dlts_fields() -> None:
    schema = users_schema()
    state = json.loads(state_object(schema["name"], schema).body)
    theirs = golden("_dlt_pipeline_state")
    assert set(state) == set(theirs)
    inner = json.loads(zlib.decompress(base64.b64decode(state["state"])))
    their_inner = json.loads(zlib.decompress(base64.b64decode(theirs["state"])))
    assert set(inner) == set(their_inner)
    assert inner["_version_hash"] == state["version_hash"]

    loads = json.loads(dlt_files.loads_object(schema, STAMP, inserted_at=STAMP.started_at).body)
    assert loads == {
        "load_id": STAMP.load_id,
        "schema_name": schema["name"],
        "status": 0,
        "inserted_at": "2026-11-25T07:36:16+00:00",
        "schema_version_hash": schema["version_hash"],
    }
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", schema["version_hash"])


# The dlt that ingestr 0.14.155 (the seed's ingestr) writes with: its golden files are in data/.
DLT = "dlt==1.21.0"


def test_real_dlt_accepts_our_schema_and_state(tmp_path: Path) -> None:
    python = python_with(DLT)
    arrow = pa.schema(
        [
            ("id", pa.int64()),
            ("name", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("amount", pa.decimal128(10, 2)),
            ("tags", pa.list_(pa.string())),
        ]
    )
    # dlt requires schema names to be identifiers; ingestr's hex pipeline names are not.
    schema = dlt_files.stored_schema(
        "records_schema", [dlt_files.table_schema("users", arrow, "append", "parquet")], None
    )
    (tmp_path / "version.json").write_bytes(dlt_files.version_object(schema, STAMP).body)
    state = state_object("records_pipeline", schema)
    (tmp_path / "state.json").write_bytes(state.body)
    check = (
        "import json, sys\n"
        "from dlt.common.schema import Schema\n"
        "from dlt.common.schema.utils import verify_schema_hash\n"
        "from dlt.common.versioned_state import decompress_state\n"
        "version = json.load(open(sys.argv[1]))\n"
        "stored = json.loads(version['schema'])\n"
        "assert verify_schema_hash(stored), 'hash'\n"
        "schema = Schema.from_dict(stored)\n"
        "assert schema.version_hash == version['version_hash']\n"
        "doc = json.load(open(sys.argv[2]))\n"
        "state = decompress_state(doc['state'])\n"
        "print(json.dumps({'tables': sorted(schema.data_table_names()),\n"
        "    'ts': schema.get_table_columns('users')['ts'], 'pipeline': state['pipeline_name']}))\n"
    )
    done = subprocess.run(
        [str(python), "-c", check, str(tmp_path / "version.json"), str(tmp_path / "state.json")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "RUNTIME__DLTHUB_TELEMETRY": "false"},
        cwd=tmp_path,  # not the repository, whose operator/ would shadow the stdlib module
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert seen["tables"] == ["users"]
    assert seen["ts"]["data_type"] == "timestamp" and seen["ts"]["timezone"] is True
    assert seen["pipeline"] == "records_pipeline"
