"""Prometheus metrics of Ingestions, in the text exposition format.

Series are labelled by the Ingestion's namespace and name and removed when it is deleted,
so a dashboard never shows syncs that no longer exist. A run is counted once however often
the operator observes its finished Job (status is level-based: it is derived again on every
change), because runs are recorded by Job name.

The project's package set has no Prometheus client; the format is small enough to write here
(https://prometheus.io/docs/instrumenting/exposition_formats/).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
_RESULTS = ("succeeded", "failed")
_REMEMBERED_RUNS = 64  # per Ingestion: far more than a status history keeps

Key = tuple[str, str]  # (namespace, name)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + text + "}" if text else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class _Series:
    last_success: float | None = None
    last_result_succeeded: bool | None = None
    next_run: float | None = None
    interval: float | None = None
    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_RESULTS, 0))
    rows: int = 0
    bytes: int = 0
    duration_buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_sum: float = 0.0
    duration_count: int = 0
    seen_jobs: OrderedDict[str, None] = field(default_factory=OrderedDict)


class IngestionMetrics:
    """Per-Ingestion metrics; thread-safe, rendered by `render()`."""

    def __init__(self) -> None:
        self._series: dict[Key, _Series] = {}
        self._lock = threading.Lock()
        self.leading = True
        """False while this replica stands by for the leader-election Lease (it acts on
        nothing and so reports no Ingestion series, only `kingest_operator_leader 0`)."""

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
            series = self._series.setdefault(key, _Series())
            if job in series.seen_jobs:
                return False
            series.seen_jobs[job] = None
            if len(series.seen_jobs) > _REMEMBERED_RUNS:
                series.seen_jobs.popitem(last=False)
            result = "succeeded" if succeeded else "failed"
            series.runs[result] += 1
            series.last_result_succeeded = succeeded
            if succeeded:
                series.last_success = max(series.last_success or 0.0, finished_at)
                series.rows += rows
                series.bytes += bytes_loaded
            if duration_s is not None:
                series.duration_sum += duration_s
                series.duration_count += 1
                for i, bound in enumerate(DURATION_BUCKETS):
                    if duration_s <= bound:
                        series.duration_buckets[i] += 1
            return True

    def set_next_run(
        self, key: Key, timestamp: float | None, interval_s: float | None = None
    ) -> None:
        """The next scheduled run and the schedule's period after it (None: not scheduled,
        the series are dropped)."""
        with self._lock:
            series = self._series.setdefault(key, _Series())
            series.next_run, series.interval = timestamp, interval_s

    def set_outcome(self, key: Key, last_success: float | None, succeeded: bool | None) -> None:
        """The last success and last result as the status records them: the gauges hold
        across a restart of the operator, before the next run finishes."""
        with self._lock:
            series = self._series.setdefault(key, _Series())
            if last_success is not None:
                series.last_success = max(series.last_success or 0.0, last_success)
            if succeeded is not None:
                series.last_result_succeeded = succeeded

    def forget(self, key: Key) -> None:
        """Remove every series of a deleted Ingestion."""
        with self._lock:
            self._series.pop(key, None)

    def render(self) -> str:
        """All metrics in Prometheus' text exposition format."""
        with self._lock:
            items = sorted(self._series.items())
            lines: list[str] = []

            def family(name: str, kind: str, help_text: str) -> None:
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")

            def base(key: Key) -> list[tuple[str, str]]:
                return [("namespace", key[0]), ("name", key[1])]

            family(
                "kingest_operator_leader",
                "gauge",
                "1 if this replica acts on Ingestions (holds the Lease, or runs alone), "
                "0 while it stands by.",
            )
            lines.append(f"kingest_operator_leader {1 if self.leading else 0}")

            family(
                "kingest_ingestion_last_success_timestamp_seconds",
                "gauge",
                "When the Ingestion's last successful run finished (Unix time).",
            )
            for key, s in items:
                if s.last_success is not None:
                    lines.append(
                        "kingest_ingestion_last_success_timestamp_seconds"
                        f"{_labels(base(key))} {_number(s.last_success)}"
                    )
            family(
                "kingest_ingestion_last_run_success",
                "gauge",
                "1 if the Ingestion's last finished run succeeded, 0 if it failed.",
            )
            for key, s in items:
                if s.last_result_succeeded is not None:
                    value = 1 if s.last_result_succeeded else 0
                    lines.append(f"kingest_ingestion_last_run_success{_labels(base(key))} {value}")
            family(
                "kingest_ingestion_next_run_timestamp_seconds",
                "gauge",
                "When the Ingestion's schedule fires next (Unix time).",
            )
            for key, s in items:
                if s.next_run is not None:
                    lines.append(
                        "kingest_ingestion_next_run_timestamp_seconds"
                        f"{_labels(base(key))} {_number(s.next_run)}"
                    )
            family(
                "kingest_ingestion_schedule_interval_seconds",
                "gauge",
                "Seconds between the Ingestion's next slot and the one after it.",
            )
            for key, s in items:
                if s.interval is not None:
                    lines.append(
                        "kingest_ingestion_schedule_interval_seconds"
                        f"{_labels(base(key))} {_number(s.interval)}"
                    )
            family("kingest_ingestion_runs_total", "counter", "Finished runs, by result.")
            for key, s in items:
                for result in _RESULTS:
                    labels = _labels([*base(key), ("result", result)])
                    lines.append(f"kingest_ingestion_runs_total{labels} {s.runs[result]}")
            family(
                "kingest_ingestion_rows_loaded_total", "counter", "Rows loaded by successful runs."
            )
            for key, s in items:
                lines.append(f"kingest_ingestion_rows_loaded_total{_labels(base(key))} {s.rows}")
            family(
                "kingest_ingestion_bytes_loaded_total", "counter", "Bytes read by successful runs."
            )
            for key, s in items:
                lines.append(f"kingest_ingestion_bytes_loaded_total{_labels(base(key))} {s.bytes}")
            family(
                "kingest_ingestion_run_duration_seconds",
                "histogram",
                "Duration of finished runs, from the runner's own measurement.",
            )
            for key, s in items:
                if s.duration_count == 0:
                    continue
                for bound, count in zip(DURATION_BUCKETS, s.duration_buckets, strict=True):
                    labels = _labels([*base(key), ("le", repr(float(bound)))])
                    lines.append(f"kingest_ingestion_run_duration_seconds_bucket{labels} {count}")
                labels = _labels([*base(key), ("le", "+Inf")])
                lines.append(
                    f"kingest_ingestion_run_duration_seconds_bucket{labels} {s.duration_count}"
                )
                lines.append(
                    f"kingest_ingestion_run_duration_seconds_sum{_labels(base(key))} "
                    f"{_number(s.duration_sum)}"
                )
                lines.append(
                    f"kingest_ingestion_run_duration_seconds_count{_labels(base(key))} "
                    f"{s.duration_count}"
                )
        return "\n".join(lines) + "\n"
