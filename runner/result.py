"""The result of a run as one JSON object of at most 4096 bytes.

The operator points ``KINGEST_RESULT_FILE`` at the container's termination-message path,
which Kubernetes truncates at 4096 bytes: a truncated JSON object would be unreadable, so the
object is trimmed here instead (per-table counts first, then the error message).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_BYTES = 4096
RESULT_FILE_ENV = "KINGEST_RESULT_FILE"


@dataclass
class RunResult:
    """Everything a run reports; ``error`` and ``reason`` only on failure.

    ``files`` and ``bytes`` are what was read; ``files_skipped`` the matched files not read
    because the destination holds them already (incremental file syncs). A destination made
    of files adds what it wrote (``files_written``, ``bytes_written``, ``objects_written``).
    ``load_id`` is None also on success when there was nothing to load and nothing changed.
    ``cursor`` (only with ``--incremental-key`` on a DuckDB table or ``query:``) is
    ``{"key", "value", "previous", "stored", "rows_skipped"}``: the cursor after the run, the
    one before it, whether this run stored it, and the boundary rows it skipped as loaded.
    """

    status: str
    load_id: str | None = None
    rows: int = 0
    files: int = 0
    bytes: int = 0
    files_skipped: int = 0
    duration_s: float = 0.0
    destination_table: str | None = None
    tables: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    cursor: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (no ``error``/``reason`` keys on success)."""
        doc: dict[str, Any] = {
            "status": self.status,
            "load_id": self.load_id,
            "rows": self.rows,
            "files": self.files,
            "bytes": self.bytes,
            "files_skipped": self.files_skipped,
            "duration_s": round(self.duration_s, 3),
            "destination_table": self.destination_table,
            "tables": dict(self.tables),
            **self.written,
        }
        if self.cursor is not None:
            doc["cursor"] = self.cursor
        if self.status != "succeeded":
            doc["error"] = self.error
            doc["reason"] = self.reason
        return doc

    def to_json(self, limit: int = MAX_BYTES) -> str:
        """One-line JSON of at most ``limit`` bytes (UTF-8): trims ``tables``, then ``error``."""
        doc = self.to_dict()
        text = _dumps(doc)
        if len(text.encode()) <= limit:
            return text
        tables = doc["tables"]
        kept: dict[str, int] = {}
        for name in sorted(tables, key=lambda n: -tables[n]):
            candidate = {**doc, "tables": {**kept, name: tables[name]}, "tables_trimmed": True}
            if len(_dumps(candidate).encode()) > limit:
                break
            kept[name] = tables[name]
        doc = {**doc, "tables": kept, "tables_trimmed": True}
        text = _dumps(doc)
        if len(text.encode()) <= limit or not doc.get("error"):
            return text
        error: str = doc["error"]
        overflow = len(text.encode()) - limit + len(" [...]") + 8
        shortened = error.encode()[: max(0, len(error.encode()) - overflow)].decode(errors="ignore")
        return _dumps({**doc, "error": shortened + " [...]"})

    def write(self, environ: dict[str, str] | None = None) -> None:
        """Write the JSON to ``$KINGEST_RESULT_FILE`` if that is set (else do nothing)."""
        path = (os.environ if environ is None else environ).get(RESULT_FILE_ENV)
        if path:
            Path(path).write_text(self.to_json() + "\n", encoding="utf-8")


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(", ", ": "), ensure_ascii=False)
