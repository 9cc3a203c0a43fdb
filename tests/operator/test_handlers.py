"""The pure helpers of the handlers and the reconciler."""

from __future__ import annotations

from kingest.operator.handlers import wants_reconcile
from kingest.operator.reconciler import check, check_text, old_status


def test_an_unreadable_status_still_remembers_which_runs_were_started() -> None:
    status = old_status(
        {"observedGeneration": 4, "handledRunRequest": "x", "fieldFromTheFuture": True}
    )
    assert (status.observed_generation, status.handled_run_request) == (4, "x")


def test_spec_check_says_what_is_wrong_and_is_cached() -> None:
    spec = {
        "source": {"uri": "duckdb:///records.db", "table": "public.users"},
        "destination": {"uri": "ftp://x", "table": "b/records"},
    }
    parsed, problem = check(spec)
    assert parsed is None
    assert problem is not None and "ftp:// is not supported as a destination" in problem
    hits = check_text.cache_info().hits
    assert check(dict(reversed(spec.items()))) == (parsed, problem)
    assert check_text.cache_info().hits == hits + 1


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
