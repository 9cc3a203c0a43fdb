"""The pure helpers of the handlers module."""

from __future__ import annotations

from kingest.operator.handlers import _check, _check_text, _old_status, wants_reconcile


def test_an_unreadable_status_still_remembers_which_runs_were_started() -> None:
    status = _old_status(
        {"observedGeneration": 4, "handledRunRequest": "x", "fieldFromTheFuture": True}
    )
    assert (status.observed_generation, status.handled_run_request) == (4, "x")


def test_spec_check_says_what_is_wrong_and_is_cached() -> None:
    spec = {
        "source": {"uri": "duckdb:///records.db", "table": "public.users"},
        "destination": {"uri": "ftp://x", "table": "b/records"},
    }
    parsed, problem = _check(spec)
    assert parsed is None
    assert problem is not None and "ftp:// is not supported as a destination" in problem
    hits = _check_text.cache_info().hits
    assert _check(dict(reversed(spec.items()))) == (parsed, problem)
    assert _check_text.cache_info().hits == hits + 1


def _ingestion(generation: int, status: dict, **annotations: str) -> dict:
    return {"metadata": {"generation": generation, "annotations": annotations}, "status": status}


def test_only_events_that_ask_for_something_are_reconciled() -> None:
    acted = {"observedGeneration": 2, "handledRunRequest": "a"}
    assert wants_reconcile(None, _ingestion(2, acted))  # listed at operator start
    assert wants_reconcile("ADDED", _ingestion(1, {}))
    assert wants_reconcile("MODIFIED", _ingestion(3, acted))  # a new spec
    assert wants_reconcile("MODIFIED", _ingestion(2, acted, **{"kingest.io/run-requested": "b"}))
    assert not wants_reconcile(
        "MODIFIED", _ingestion(2, acted, **{"kingest.io/run-requested": "a"})
    )
    assert not wants_reconcile("MODIFIED", _ingestion(2, acted))  # the operator's own write
    assert not wants_reconcile("DELETED", _ingestion(2, {}))
