"""The ``kingest`` console script: the process around :func:`kingest.runner.cli.main`.

``kingest ingest`` is a short process, and every run pays for its start and its end. Three
process settings apply to it (the operator, a long-lived process, runs as usual):

- **No garbage collection while it starts.** The imports and the S3 client create some
  130,000 objects that live for the whole run; collecting them again and again finds nothing
  and cost about 30 ms of a 1 s Parquet load (bench/s3_to_duckdb.py). Collection resumes,
  with those objects frozen out of it, once the source stream is open (:func:`resume_gc`).
- **No interpreter teardown.** When ``ingest`` returns, the run has committed, closed its
  database and written its result; collecting and freeing every module's objects and shutting
  the AWS SDK down cost 80-90 ms more, for nothing.
- **Arrow allocates with jemalloc** (``ARROW_DEFAULT_MEMORY_POOL``, unless set already). pyarrow's
  default, mimalloc, maps memory as transparent huge pages and hands it back between batches:
  the kernel zeroed 2 MB pages again and again, 12 % of a ten-file Parquet load's CPU. With
  jemalloc that load took 0.91 s instead of 0.98-1.03 s, one 2M-row JSONL object 2.61 s instead
  of 3.35 s (bench/s3_to_duckdb.py; the gain varies from run to run, figures in the README).

Only the standard library is imported here, so these apply before anything else loads.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from typing import NoReturn

# Read by Arrow when it first allocates. pyarrow's Linux wheels have jemalloc built in; one
# without it warns once on stderr and keeps its default.
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
ARROW_POOL = "jemalloc"

_gc_paused = False


def resume_gc() -> None:
    """Collect garbage again if :func:`main` paused it; what exists by now is kept out of
    every later collection (it lives until the process ends). A no-op otherwise."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


def arrow_allocates_with_jemalloc() -> None:
    """Make jemalloc Arrow's process-wide memory pool, unless ``ARROW_DEFAULT_MEMORY_POOL``
    names one already. Effective only before pyarrow loads (Arrow reads the variable once)."""
    os.environ.setdefault(ARROW_POOL_VARIABLE, ARROW_POOL)


def main() -> NoReturn:
    """Run ``kingest``; exit with its code."""
    global _gc_paused
    ingest = sys.argv[1:2] == ["ingest"]
    if ingest:
        arrow_allocates_with_jemalloc()
    if ingest and gc.isenabled():
        gc.disable()
        _gc_paused = True

    from kingest.runner.cli import main as cli_main

    code = cli_main()
    if ingest:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
