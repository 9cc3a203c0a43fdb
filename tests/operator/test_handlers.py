"""The pure helpers of the handlers module."""

from __future__ import annotations

from kingest.operator.handlers import _check, _check_text, _old_status


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
