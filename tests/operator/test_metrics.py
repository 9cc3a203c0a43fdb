"""Ingestion metrics render as valid Prometheus text, count each run once, and go away."""

from prometheus_client.parser import text_string_to_metric_families

from kingest.operator.metrics import IngestionMetrics

KEY = ("team-a", "students")
LEADER = "kingest_operator_leader"


def samples(metrics: IngestionMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the exposition with Prometheus' own parser: (name, labels) -> value."""
    parsed = {}
    for family in text_string_to_metric_families(metrics.render()):
        for sample in family.samples:
            parsed[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return parsed


def labels(**extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"namespace": KEY[0], "name": KEY[1], **extra}.items()))


def test_a_successful_run_sets_every_series() -> None:
    metrics = IngestionMetrics()
    metrics.record_run(
        KEY,
        "students-1",
        succeeded=True,
        finished_at=1_764_000_000.5,
        duration_s=12.5,
        rows=1000,
        bytes_loaded=4096,
    )
    metrics.set_next_run(KEY, 1_764_003_600)
    got = samples(metrics)
    assert got[("kingest_ingestion_last_success_timestamp_seconds", labels())] == 1_764_000_000.5
    assert got[("kingest_ingestion_last_run_success", labels())] == 1
    assert got[("kingest_ingestion_next_run_timestamp_seconds", labels())] == 1_764_003_600
    assert got[("kingest_ingestion_runs_total", labels(result="succeeded"))] == 1
    assert got[("kingest_ingestion_runs_total", labels(result="failed"))] == 0
    assert got[("kingest_ingestion_rows_loaded_total", labels())] == 1000
    assert got[("kingest_ingestion_bytes_loaded_total", labels())] == 4096
    assert got[("kingest_ingestion_run_duration_seconds_bucket", labels(le="10.0"))] == 0
    assert got[("kingest_ingestion_run_duration_seconds_bucket", labels(le="30.0"))] == 1
    assert got[("kingest_ingestion_run_duration_seconds_count", labels())] == 1
    assert got[("kingest_ingestion_run_duration_seconds_sum", labels())] == 12.5


def test_a_run_observed_twice_counts_once() -> None:
    metrics = IngestionMetrics()
    for _ in range(3):
        metrics.record_run(KEY, "students-1", succeeded=True, finished_at=1.0, duration_s=1, rows=5)
    assert samples(metrics)[("kingest_ingestion_rows_loaded_total", labels())] == 5


def test_a_failed_run_keeps_the_last_success_and_counts_the_failure() -> None:
    metrics = IngestionMetrics()
    metrics.record_run(KEY, "students-1", succeeded=True, finished_at=100.0, duration_s=1)
    metrics.record_run(KEY, "students-2", succeeded=False, finished_at=200.0, duration_s=1, rows=9)
    got = samples(metrics)
    assert got[("kingest_ingestion_last_success_timestamp_seconds", labels())] == 100.0
    assert got[("kingest_ingestion_last_run_success", labels())] == 0
    assert got[("kingest_ingestion_runs_total", labels(result="failed"))] == 1
    assert got[("kingest_ingestion_rows_loaded_total", labels())] == 0


def test_deleting_an_ingestion_removes_its_series() -> None:
    metrics = IngestionMetrics()
    other = ("team-b", "orders")
    metrics.record_run(KEY, "students-1", succeeded=True, finished_at=1.0, duration_s=1)
    metrics.record_run(other, "orders-1", succeeded=True, finished_at=1.0, duration_s=1)
    metrics.forget(KEY)
    names = {dict(lbls)["name"] for (name, lbls) in samples(metrics) if name != LEADER}
    assert names == {"orders"}


def test_the_leader_gauge_says_whether_this_replica_acts() -> None:
    metrics = IngestionMetrics()
    assert samples(metrics) == {(LEADER, ()): 1}
    metrics.leading = False
    assert samples(metrics) == {(LEADER, ()): 0}


def test_label_values_are_escaped() -> None:
    metrics = IngestionMetrics()
    metrics.set_next_run(("ns", 'we"ird\\name'), 5)
    got = samples(metrics)
    key = (
        "kingest_ingestion_next_run_timestamp_seconds",
        (("name", 'we"ird\\name'), ("namespace", "ns")),
    )
    assert got[key] == 5


def test_the_status_restores_the_outcome_gauges_and_a_schedule_reports_its_period() -> None:
    metrics = IngestionMetrics()
    metrics.set_outcome(KEY, 1_764_000_000.0, succeeded=False)
    metrics.set_next_run(KEY, 1_764_003_600.0, 3600.0)
    parsed = samples(metrics)
    assert parsed[("kingest_ingestion_last_success_timestamp_seconds", labels())] == 1_764_000_000
    assert parsed[("kingest_ingestion_last_run_success", labels())] == 0
    assert parsed[("kingest_ingestion_schedule_interval_seconds", labels())] == 3600
    metrics.set_outcome(KEY, 1_763_000_000.0, succeeded=None)  # an older time never wins
    assert samples(metrics)[("kingest_ingestion_last_success_timestamp_seconds", labels())] == (
        1_764_000_000
    )
    metrics.set_next_run(KEY, None)
    assert ("kingest_ingestion_schedule_interval_seconds", labels()) not in samples(metrics)


def test_the_status_gauges_come_back_after_a_forget_with_the_same_values() -> None:
    metrics = IngestionMetrics()
    metrics.set_next_run(KEY, 1_764_003_600.0, 60.0)
    metrics.set_outcome(KEY, 1_764_000_000.0, succeeded=True)
    metrics.forget(KEY)  # deleted, and re-created under the same name
    metrics.set_next_run(KEY, 1_764_003_600.0, 60.0)
    metrics.set_outcome(KEY, 1_764_000_000.0, succeeded=True)
    parsed = samples(metrics)
    assert parsed[("kingest_ingestion_next_run_timestamp_seconds", labels())] == 1_764_003_600
    assert parsed[("kingest_ingestion_last_run_success", labels())] == 1


def test_the_status_outcome_is_set_again_after_a_recorded_run_changed_it() -> None:
    metrics = IngestionMetrics()
    metrics.set_outcome(KEY, 1_764_000_000.0, succeeded=True)
    metrics.record_run(KEY, "students-2", succeeded=False, finished_at=1.0, duration_s=1)
    metrics.set_outcome(KEY, 1_764_000_000.0, succeeded=True)
    assert samples(metrics)[("kingest_ingestion_last_run_success", labels())] == 1
