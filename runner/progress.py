"""What a person (or a log collector) sees while a run goes: progress lines or JSON events."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TextIO

from kingest.runner.interfaces import SourceStream


def human_bytes(count: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def json_event(event: str, **fields: object) -> str:
    """One ``--progress json`` line: ingestr's ``time``, ``level``, ``msg``, ``event`` keys,
    then ``fields`` (``status: error`` makes the level ERROR)."""
    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": "ERROR" if fields.get("status") == "error" else "INFO",
        "msg": event,
        "event": event,
        **fields,
    }
    return json.dumps(record, separators=(",", ":"))


class ProgressLine:
    """Redraws one status line (files, rows, bytes, rows/s) every ``interval`` seconds.

    ``mode`` ``"interactive"`` rewrites the line in place (for a TTY); ``"log"`` prints a new
    line each time (for log collectors, which mangle carriage returns); ``"json"`` prints one
    JSON object per event, as ingestr's ``--progress json`` does: ``start``, ``progress``
    every second, and ``end`` (with ``status`` success or error). Keys: ``time``, ``level``,
    ``msg``, ``event``, ``rows``, ``rows_per_sec``, ``elapsed_sec``, plus kingest's ``files``,
    ``total_files`` and ``bytes``. Errors themselves are in the run's result JSON.
    """

    _INTERVALS = {"interactive": 0.25, "log": 10.0, "json": 1.0}

    def __init__(self, stream: SourceStream, mode: str, out: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._mode = mode
        self._out = out
        self._started = time.monotonic()
        self._stop = threading.Event()
        interval = self._INTERVALS[mode]
        if mode == "json":
            self._emit("start")
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self._thread.start()

    def _render(self) -> str:
        stats = self._stream.stats
        elapsed = max(time.monotonic() - self._started, 1e-6)
        files = f"{stats.files}"
        if self._stream.total_files is not None:
            files += f"/{self._stream.total_files}"
        return (
            f"files {files}  rows {stats.rows:,}  {human_bytes(stats.bytes)}  "
            f"{stats.rows / elapsed:,.0f} rows/s  {elapsed:.1f}s"
        )

    def _event(self, event: str, **extra: object) -> str:
        stats = self._stream.stats
        elapsed = max(time.monotonic() - self._started, 1e-6)
        return json_event(
            event,
            rows=stats.rows,
            rows_per_sec=round(stats.rows / elapsed, 1),
            elapsed_sec=round(elapsed, 3),
            files=stats.files,
            total_files=self._stream.total_files,
            bytes=stats.bytes,
            **extra,
        )

    def _emit(self, event: str, **extra: object) -> None:
        self._out.write(self._event(event, **extra) + "\n")
        self._out.flush()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self._mode == "json":
                self._emit("progress")
            elif self._mode == "interactive":
                self._out.write("\r\x1b[2K" + self._render())
            else:
                self._out.write(self._render() + "\n")
            self._out.flush()

    def stop(self, succeeded: bool = True) -> None:
        """Stop redrawing and leave the cursor on a fresh line (json: write the end event)."""
        self._stop.set()
        self._thread.join()
        if self._mode == "json":
            self._emit("end", status="success" if succeeded else "error")
        elif self._mode == "interactive":
            self._out.write("\r\x1b[2K")
            self._out.flush()
