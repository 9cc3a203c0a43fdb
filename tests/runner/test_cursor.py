"""Where a run starts and what it records (`plan_cursor`), and how the tracker moves the cursor."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from kingest.runner.cursor import CursorPlan, CursorTracker, plan_cursor
from kingest.runner.dlt_state import CursorAddress, CursorState, next_state, row_hash
from kingest.runner.errors import DataError
from kingest.runner.interfaces import LoadOptions, Strategy

ADDRESS = CursorAddress("pipe", "users", "id")
STORED = CursorState(last_value=10, unique_hashes=("h",), initial_value=None)


def stored_state() -> dict[str, object]:
    return next_state(
        None,
        pipeline_name="pipe",
        schema_name="pipe",
        dataset_name="d",
        destination_type="t",
        cursor=(ADDRESS, STORED),
    )


def plan(**options: object) -> CursorPlan:
    """The plan for an append on ``id`` with ``options``, against a stored cursor at 10."""
    given: dict[str, object] = {"incremental_key": "id", "strategy": Strategy.APPEND, **options}
    flags = LoadOptions(**given)  # type: ignore[arg-type]
    return plan_cursor(flags, ADDRESS, stored_state())


def test_a_run_resumes_from_the_stored_cursor() -> None:
    resumed = plan()
    assert resumed.start == STORED and resumed.carry == STORED and resumed.records


def test_full_refresh_and_replace_start_afresh_but_record() -> None:
    for fresh in (plan(full_refresh=True), plan(strategy=Strategy.REPLACE)):
        assert fresh.start is None and fresh.carry is None and fresh.records


def test_an_interval_end_is_a_backfill_that_records_nothing() -> None:
    backfill = plan(interval_start="1", interval_end="5")
    assert backfill.start is None and not backfill.records and backfill.stored == STORED


def test_an_interval_start_alone_reads_from_it_and_moves_the_cursor_forward_only() -> None:
    from_start = plan(interval_start="1")
    assert from_start.start is None and from_start.carry == STORED


def test_boundary_hashes_cover_the_primary_key_the_row_or_nothing() -> None:
    assert plan(primary_key=("id",)).unique_on == ("id",)
    assert plan().unique_on is None
    assert plan(strategy=Strategy.DELETE_INSERT).unique_on == ()


def follow(tracker: CursorTracker, *batches: dict[str, list[object]]) -> list[int]:
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    reader = pa.RecordBatchReader.from_batches(
        schema, [pa.RecordBatch.from_pydict(b, schema=schema) for b in batches]
    )
    return [row["id"] for batch in tracker.wrap(reader) for row in batch.to_pylist()]


def test_the_tracker_skips_loaded_boundary_rows_and_keeps_the_new_boundary() -> None:
    loaded = {"id": 10, "name": "a"}
    start = CursorState(10, (row_hash(loaded),))
    tracker = CursorTracker(CursorPlan(ADDRESS, start, start, unique_on=None, initial_value=None))

    read = follow(
        tracker,
        {"id": [10, 10, 11], "name": ["a", "b", "c"]},
        {"id": [12, 12], "name": ["d", "e"]},
    )

    assert read == [10, 11, 12, 12]  # ("10", "a") was loaded before
    update = tracker.update()
    assert update is not None
    assert update[1].last_value == 12
    assert sorted(update[1].unique_hashes) == sorted(
        row_hash({"id": 12, "name": n}) for n in ("d", "e")
    )
    assert tracker.report()["rows_skipped"] == 1


def test_rows_without_a_cursor_value_are_refused() -> None:
    tracker = CursorTracker(plan_cursor(LoadOptions(incremental_key="id"), ADDRESS, None))
    with pytest.raises(DataError, match="NULL"):
        follow(tracker, {"id": [1, None], "name": ["a", "b"]})


def test_the_report_renders_timestamps_as_iso_text() -> None:
    state = next_state(
        None,
        pipeline_name="pipe",
        schema_name="pipe",
        dataset_name="d",
        destination_type="t",
        cursor=(ADDRESS, CursorState(datetime(2024, 1, 2, 3))),
    )
    tracker = CursorTracker(plan_cursor(LoadOptions(incremental_key="id"), ADDRESS, state))
    assert tracker.report()["previous"] == "2024-01-02T03:00:00"
