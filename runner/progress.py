"""What a person sees while and after a run: a live progress line and the summary."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from kingest.runner.interfaces import SourceStream


def human_bytes(count: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class ProgressLine:
    """Redraws one status line (files, rows, bytes, rows/s) every ``interval`` seconds.

    ``mode`` ``"interactive"`` rewrites the line in place (for a TTY); ``"log"`` prints a new
    line each time (for log collectors, which mangle carriage returns).
    """

    def __init__(self, stream: SourceStream, mode: str, out: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._mode = mode
        self._out = out
        self._started = time.monotonic()
        self._stop = threading.Event()
        interval = 0.25 if mode == "interactive" else 10.0
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

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self._mode == "interactive":
                self._out.write("\r\x1b[2K" + self._render())
            else:
                self._out.write(self._render() + "\n")
            self._out.flush()

    def stop(self) -> None:
        """Stop redrawing and leave the cursor on a fresh line."""
        self._stop.set()
        self._thread.join()
        if self._mode == "interactive":
            self._out.write("\r\x1b[2K")
            self._out.flush()
