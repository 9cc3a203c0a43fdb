"""The CRD file is generated from the spec models and is a well-formed structural schema."""

from __future__ import annotations

from typing import Any

import yaml

from kingest.operator import crd


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every field (object property) below `schema`, through arrays' items."""
    found = []
    for name, prop in (schema.get("properties") or {}).items():
        found += [(f"{path}.{name}", prop), *_walk(prop, f"{path}.{name}")]
    if isinstance(schema.get("items"), dict):
        found += _walk(schema["items"], f"{path}[]")
    return found


def _root() -> dict[str, Any]:
    return crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_the_committed_crd_file_matches_the_models() -> None:
    assert crd.CRD_FILE.read_text() == crd.render(), (
        "crds/ingestions.kingest.io.yaml is stale: run `python -m kingest.operator.crd`"
    )


def test_every_spec_and_status_field_has_a_description() -> None:
    for part in ("spec", "status"):
        for path, node in _walk(_root()["properties"][part], part):
            assert node.get("description"), f"{path} has no description"


def test_every_node_has_a_type_and_no_pydantic_leftovers() -> None:
    for path, node in [("", _root()), *_walk(_root())]:
        assert "type" in node, f"{path} has no type (not structural)"
        for key in ("$ref", "anyOf", "title", "$defs"):
            assert key not in node, f"{path} keeps {key}"


def test_enums_and_defaults_come_from_the_models() -> None:
    spec = _root()["properties"]["spec"]["properties"]
    strategy = spec["incrementalStrategy"]
    assert strategy["enum"] == ["replace", "append", "merge", "delete+insert", "scd2", "none"]
    assert strategy["default"] == "replace"
    assert spec["schemaContract"]["enum"] == ["evolve", "freeze", "discard_row", "discard_value"]
    assert spec["schemaNaming"]["enum"] == ["snake_case", "direct"]
    assert spec["mask"]["items"] == {"type": "string"}
    assert spec["runner"]["properties"]["backoffLimit"]["default"] == 0
    assert spec["runner"]["properties"]["imagePullPolicy"]["enum"] == [
        "Always",
        "IfNotPresent",
        "Never",
    ]


def test_pass_through_kubernetes_objects_keep_their_unknown_fields() -> None:
    runner = _root()["properties"]["spec"]["properties"]["runner"]["properties"]
    assert runner["volumes"]["items"]["x-kubernetes-preserve-unknown-fields"] is True
    assert runner["affinity"]["x-kubernetes-preserve-unknown-fields"] is True
    assert runner["nodeSelector"]["additionalProperties"] == {"type": "string"}


def test_names_status_subresource_and_printer_columns() -> None:
    spec = yaml.safe_load(crd.render())["spec"]
    assert spec["names"]["shortNames"] == ["ingest"]
    assert spec["scope"] == "Namespaced"
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns)[:7] == [
        "Ready",
        "Phase",
        "Last Load ID",
        "Rows",
        "Last Run",
        "Next Run",
        "Age",
    ]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert {c["name"] for c in columns.values() if c.get("priority") == 1} == {
        "Source",
        "Destination",
        "Schedule",
        "Cursor",
        "Suspend",
        "Message",
    }
    assert columns["Cursor"]["jsonPath"] == ".status.cursor.value"
