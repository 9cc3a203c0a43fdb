"""Prometheus metrics of Ingestions, with `prometheus-client`.

Series are labelled by the Ingestion's namespace and name and removed when it is deleted,
so a dashboard never shows syncs that no longer exist. A run is counted once however often
the operator observes its finished Job (status is level-based: it is derived again on every
change), because runs are recorded by Job name.

Each `IngestionMetrics` has its own registry (no process-wide default registry), built by
`kingest operator` and served by `kingest.operator.health.ProbeServer`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
_RESULTS = ("succeeded", "failed")
_REMEMBERED_RUNS = 64  # per Ingestion: far more than a status history keeps
_LABELS = ("namespace", "name")

Key = tuple[str, str]  # (namespace, name)

# `*_created` series would double the series of every Ingestion, and no rule reads them.
disable_created_metrics()


class IngestionMetrics:
    """Per-Ingestion metrics, in a registry of their own; thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        family = {"registry": self.registry}
        self._leader = Gauge(
            "kingest_operator_leader",
            "1 if this replica acts on Ingestions (holds the Lease, or runs alone), "
            "0 while it stands by.",
            **family,
        )
        self._last_success = Gauge(
            "kingest_ingestion_last_success_timestamp_seconds",
            "When the Ingestion's last successful run finished (Unix time).",
            _LABELS,
            **family,
        )
        self._last_result = Gauge(
            "kingest_ingestion_last_run_success",
            "1 if the Ingestion's last finished run succeeded, 0 if it failed.",
            _LABELS,
            **family,
        )
        self._next_run = Gauge(
            "kingest_ingestion_next_run_timestamp_seconds",
            "When the Ingestion's schedule fires next (Unix time).",
            _LABELS,
            **family,
        )
        self._interval = Gauge(
            "kingest_ingestion_schedule_interval_seconds",
            "Seconds between the Ingestion's next slot and the one after it.",
            _LABELS,
            **family,
        )
        self._runs = Counter(
            "kingest_ingestion_runs", "Finished runs, by result.", (*_LABELS, "result"), **family
        )
        self._rows = Counter(
            "kingest_ingestion_rows_loaded", "Rows loaded by successful runs.", _LABELS, **family
        )
        self._bytes = Counter(
            "kingest_ingestion_bytes_loaded", "Bytes read by successful runs.", _LABELS, **family
        )
        self._duration = Histogram(
            "kingest_ingestion_run_duration_seconds",
            "Duration of finished runs, from the runner's own measurement.",
            _LABELS,
            buckets=DURATION_BUCKETS,
            **family,
        )
        self._lock = threading.Lock()
        # Per Ingestion: the Jobs already counted, and the latest success (never moves back).
        self._counted: dict[Key, OrderedDict[str, None]] = {}
        self._latest_success: dict[Key, float] = {}
        # Per Ingestion: the values `set_next_run` and `set_outcome` last set. A reconcile
        # sets them all every time, mostly to what they were, and a labelled series costs a
        # `labels()` lookup (label checks, a lock) each time.
        self._set: dict[tuple[str, Key], tuple[object, ...]] = {}
        self.leading = True

    @property
    def leading(self) -> bool:
        """False while this replica stands by for the leader-election Lease (it acts on
        nothing and so reports no Ingestion series, only `kingest_operator_leader 0`)."""
        return self._leading

    @leading.setter
    def leading(self, value: bool) -> None:
        self._leading = value
        self._leader.set(1 if value else 0)

    def _known(self, key: Key) -> OrderedDict[str, None]:
        """The Jobs counted for `key`; its counters start at 0 when it is first seen."""
        counted = self._counted.get(key)
        if counted is None:
            counted = self._counted[key] = OrderedDict()
            for result in _RESULTS:
                self._runs.labels(*key, result)
            self._rows.labels(*key)
            self._bytes.labels(*key)
        return counted

    def _success_at(self, key: Key, finished_at: float) -> None:
        latest = max(self._latest_success.get(key, 0.0), finished_at)
        self._latest_success[key] = latest
        self._last_success.labels(*key).set(latest)

    def record_run(
        self,
        key: Key,
        job: str,
        *,
        succeeded: bool,
        finished_at: float,
        duration_s: float | None,
        rows: int = 0,
        bytes_loaded: int = 0,
    ) -> bool:
        """Count a finished run once (by Job name); returns False if it was already counted."""
        with self._lock:
            counted = self._known(key)
            if job in counted:
                return False
            counted[job] = None
            if len(counted) > _REMEMBERED_RUNS:
                counted.popitem(last=False)
            self._set.pop(("outcome", key), None)  # its gauges change here too
            self._runs.labels(*key, "succeeded" if succeeded else "failed").inc()
            self._last_result.labels(*key).set(1 if succeeded else 0)
            if succeeded:
                self._success_at(key, finished_at)
                self._rows.labels(*key).inc(rows)
                self._bytes.labels(*key).inc(bytes_loaded)
            if duration_s is not None:
                self._duration.labels(*key).observe(duration_s)
            return True

    def set_next_run(
        self, key: Key, timestamp: float | None, interval_s: float | None = None
    ) -> None:
        """The next scheduled run and the schedule's period after it (None: not scheduled,
        the series are dropped)."""
        with self._lock:
            if not self._changes(("next_run", key), (timestamp, interval_s)):
                return
            self._known(key)
            for gauge, value in ((self._next_run, timestamp), (self._interval, interval_s)):
                if value is None:
                    gauge.remove(*key)
                else:
                    gauge.labels(*key).set(value)

    def set_outcome(self, key: Key, last_success: float | None, succeeded: bool | None) -> None:
        """The last success and last result as the status records them: the gauges hold
        across a restart of the operator, before the next run finishes."""
        with self._lock:
            if not self._changes(("outcome", key), (last_success, succeeded)):
                return
            self._known(key)
            if last_success is not None:
                self._success_at(key, last_success)
            if succeeded is not None:
                self._last_result.labels(*key).set(1 if succeeded else 0)

    def _changes(self, what: tuple[str, Key], values: tuple[object, ...]) -> bool:
        """Whether `values` differ from those last set for `what` (and remember them)."""
        if self._set.get(what) == values:
            return False
        self._set[what] = values
        return True

    def forget(self, key: Key) -> None:
        """Remove every series of a deleted Ingestion."""
        with self._lock:
            self._counted.pop(key, None)
            self._latest_success.pop(key, None)
            self._set.pop(("next_run", key), None)
            self._set.pop(("outcome", key), None)
            for metric in (
                self._last_success,
                self._last_result,
                self._next_run,
                self._interval,
                self._rows,
                self._bytes,
                self._duration,
            ):
                metric.remove(*key)
            for result in _RESULTS:
                self._runs.remove(*key, result)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics in the format the scraper's Accept header asks for, and its type."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def render(self) -> str:
        """All metrics in Prometheus' text exposition format."""
        return self.exposition()[0].decode()
