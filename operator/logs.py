"""The operator's log lines: one per run event, as text or JSON (`--log-format json`).

What happened to each run (created, adopted after a restart, its outcome, an invalid spec)
is one INFO line carrying the same reason word as the Kubernetes Event, so a log search and
`kubectl get events` agree. With `--log-format json` every line is one JSON object whose
fields (`event`, `namespace`, `ingestion`, `job`, ...) a log pipeline can index.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

FIELDS = "kingest"  # the LogRecord attribute holding a run event's fields
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a run event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(verbose: bool, log_format: str) -> None:
    """Set up the root logger: DEBUG with `verbose`, else INFO; `log_format` text or json."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        # kopf logs every watch-stream handler call at INFO: noise with hundreds of Ingestions.
        logging.getLogger("kopf").setLevel(logging.WARNING)


def run_event(
    log: logging.Logger, event: str, namespace: str, ingestion: str, message: str, **fields: Any
) -> None:
    """Log what happened to a run of Ingestion `namespace/ingestion` as one INFO line."""
    log.info(
        "%s %s/%s: %s",
        event,
        namespace,
        ingestion,
        message,
        extra={FIELDS: {"event": event, "namespace": namespace, "ingestion": ingestion, **fields}},
    )
