"""The operator's log lines: a run event is one INFO line, in text or as one JSON object."""

from __future__ import annotations

import io
import json
import logging

from kingest.operator.logs import TEXT_FORMAT, JsonFormatter, run_event


def _logged(formatter: logging.Formatter) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    log = logging.getLogger("kingest.test-logs")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    run_event(
        log, "JobDeleted", "team-a", "users", "users-1a2b: the Job was deleted", type="Warning"
    )
    return out.getvalue()


def test_a_run_event_is_one_json_object_with_its_fields() -> None:
    (line,) = _logged(JsonFormatter()).splitlines()
    record = json.loads(line)
    assert record["level"] == "INFO"
    assert (record["event"], record["namespace"], record["ingestion"], record["type"]) == (
        "JobDeleted",
        "team-a",
        "users",
        "Warning",
    )
    assert record["message"] == "JobDeleted team-a/users: users-1a2b: the Job was deleted"


def test_a_run_event_as_text_starts_with_its_reason_word() -> None:
    (line,) = _logged(logging.Formatter(TEXT_FORMAT)).splitlines()
    assert line.endswith(
        "INFO kingest.test-logs: JobDeleted team-a/users: users-1a2b: the Job was deleted"
    )
