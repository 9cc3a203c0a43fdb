"""The `ingestions.kingest.io` CustomResourceDefinition, generated from `kingest.operator.spec`.

`python -m kingest.operator.crd` rewrites `crds/ingestions.kingest.io.yaml`; a test fails when
the file and the models drift. Pydantic's JSON schema is turned into a Kubernetes structural
schema: references inlined, `Optional` unions collapsed (absent means unset), `Literal`s as
enums, free-form dicts as `x-kubernetes-preserve-unknown-fields`, titles dropped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from kingest.operator import spec

CRD_FILE = Path(__file__).resolve().parents[1] / "crds" / f"{spec.PLURAL}.{spec.GROUP}.yaml"
_DROPPED = {"title", "$defs"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express union {node['anyOf']} in a structural schema")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _structural({**branches[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "default" and value is None):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "default" and value in ({}, [], ""):
            continue  # an empty default only adds noise to every stored object
        else:
            out[key] = _structural(value, defs)
    if out.get("type") == "object" and "properties" in out:
        out.pop("additionalProperties", None)
    return out


def _without_defaults(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_defaults(item) for item in node]
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    return node


def openapi_schema(model: type[spec.Model], defaults: bool = True) -> dict[str, Any]:
    """`model`'s JSON schema as a Kubernetes structural OpenAPI v3 schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = _structural(raw, raw.get("$defs", {}))
    return schema if defaults else _without_defaults(schema)


def _column(name: str, type_: str, path: str, description: str, priority: int = 0) -> dict:
    column = {"name": name, "type": type_, "jsonPath": path, "description": description}
    if priority:
        column["priority"] = priority
    return column


def crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition object."""
    resource = {
        "type": "object",
        "description": "One declared sync from an ingestr source to an ingestr destination, run "
        "as Kubernetes Jobs by the kingest operator.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "Versioned schema of this object."},
            "kind": {"type": "string", "description": "The REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": openapi_schema(spec.IngestionSpec),
            # Status is observed state: the API server must not invent any of it.
            "status": openapi_schema(spec.IngestionStatus, defaults=False),
        },
    }
    columns = [
        # cert-manager's convention: READY first, the Ready condition's status.
        _column(
            "Ready",
            "string",
            '.status.conditions[?(@.type=="Ready")].status',
            "True once the latest run succeeded.",
        ),
        _column("Phase", "string", ".status.phase", "Summary of the Ingestion's state."),
        _column("Last Load ID", "string", ".status.lastLoadId", "Latest successful load id."),
        _column("Rows", "integer", ".status.lastRun.rows", "Rows of the latest run."),
        _column("Last Run", "date", ".status.lastRun.startTime", "When the latest run started."),
        _column("Next Run", "date", ".status.nextRunTime", "When the next scheduled run is due."),
        _column("Age", "date", ".metadata.creationTimestamp", "Age of the Ingestion."),
        _column("Source", "string", ".spec.source.table", "Source table.", priority=1),
        _column("Destination", "string", ".spec.destination.table", "Destination table.", 1),
        _column("Schedule", "string", ".spec.schedule", "Cron schedule.", priority=1),
        _column("Cursor", "string", ".status.cursor.value", "Last incremental value.", 1),
        _column("Suspend", "boolean", ".spec.suspend", "Scheduled runs paused.", priority=1),
        _column("Message", "string", ".status.message", "What to know or fix.", priority=1),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{spec.PLURAL}.{spec.GROUP}"},
        "spec": {
            "group": spec.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": spec.KIND,
                "listKind": f"{spec.KIND}List",
                "plural": spec.PLURAL,
                "singular": spec.SINGULAR,
                "shortNames": spec.SHORT_NAMES,
                "categories": ["kingest"],
            },
            "versions": [
                {
                    "name": spec.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": resource},
                }
            ],
        },
    }


def render() -> str:
    """The CRD file's text."""
    header = (
        "# Generated by `python -m kingest.operator.crd` from kingest/operator/spec.py.\n"
        "# Do not edit: change the models and regenerate.\n"
    )
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


def main() -> int:
    CRD_FILE.parent.mkdir(exist_ok=True)
    CRD_FILE.write_text(render())
    print(f"wrote {CRD_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
