"""Benchmark (issue #6): an incremental S3 -> DuckDB sync finding the new objects among many.

    .venv/bin/python bench/incremental_sync.py [--objects 100000] [--new 100] [--rounds 3]
                                               [--profile]

A bucket holds OBJECTS small CSV objects (3 rows each) under ``data/``, all loaded once by
``kingest ingest ... --incremental-strategy append`` (setup, timed: it shows the per-file cost
of a first load). Each round then PUTs NEW objects more under the same prefix (over HTTP, in
threads) and measures four whole processes against the local moto S3 server, in an order
that rotates from round to round:

- ``startup``: the same listing script over an empty prefix - a Python process with boto3
  and one request, which both baselines below pay while the incremental run pays it once;
- ``listing``: a bare boto3 ``list_objects_v2`` paginator over the whole prefix, in its own
  process - the "listing itself" that an incremental run cannot avoid;
- ``load_new``: ``kingest ingest`` of just the NEW objects, named by an exact glob, append into
  a fresh DuckDB file - loading NEW files with no record to consult;
- ``incremental``: the incremental run, ``kingest ingest`` append of ``data/*.csv`` into the
  table that holds everything before: lists all, skips what the record holds, loads NEW.

Reported: medians of wall time, CPU seconds (the process tree's, and the S3 server's while
serving it: on a shared machine CPU is steadier than wall time) and peak RSS; ``incremental /
(listing + load_new)`` (issue #6: listing must not dominate beyond the listing itself), the
same with one process start-up taken out of the baselines (in wall and CPU seconds) and the
seconds left over; the load average at each measurement (the machine is shared). Every run's
result is checked (objects listed, files loaded and skipped, rows): a wrong one fails the
benchmark. ``--profile`` runs one more incremental round under cProfile and prints where its
time goes. Results go to ``bench/results/incremental_sync.json``.

The OBJECTS are stored in bulk through the test S3 server's ``/_kingest/objects`` (one request
per 10,000, straight into moto): PUTs over HTTP manage ~100-150 objects/s on this machine,
a quarter of an hour for 100,000. The new objects of each round go over HTTP (rate reported).
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers import run_measured  # noqa: E402 - needs the repository root on sys.path
from tests.platform.s3 import S3Server  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KINGEST = ROOT / ".venv" / "bin" / "kingest"
BUCKET = "bench"
PREFIX = "data/"
ROWS_PER_OBJECT = 3
BULK_CHUNK = 10_000

LISTING = """
import sys, boto3
from botocore.config import Config
endpoint, key, secret, bucket, prefix = sys.argv[1:6]
client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                      aws_secret_access_key=secret, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}))
pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
print(sum(len(page.get("Contents", [])) for page in pages))
"""


@dataclass
class Series:
    """One contender's measurements over the rounds."""

    times: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    server_cpus: list[float] = field(default_factory=list)
    peaks_mb: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "median_s": round(statistics.median(self.times), 3),
            "times_s": [round(t, 3) for t in self.times],
            "median_cpu_s": round(statistics.median(self.cpus), 3),
            "median_server_cpu_s": round(statistics.median(self.server_cpus), 3),
            "peak_rss_mb": round(statistics.median(self.peaks_mb)),
            "load_avg_1m": [round(x, 1) for x in self.loads],
        }

    def median_total_cpu(self) -> float:
        """CPU seconds of the process and of the S3 server serving it (median over rounds)."""
        return statistics.median(c + s for c, s in zip(self.cpus, self.server_cpus, strict=True))


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


class BenchFailure(Exception):
    """A measured run failed or produced a wrong result: the figures would mean nothing."""


def csv_object(first_id: int) -> bytes:
    rows = "".join(
        f"{i},item {i},{i % 97}.5\n" for i in range(first_id, first_id + ROWS_PER_OBJECT)
    )
    return ("id,name,amount\n" + rows).encode()


def seed(s3: S3Server, objects: int) -> float:
    """Store ``objects`` CSV objects under ``data/`` in bulk; seconds taken."""
    started = time.monotonic()
    for start in range(0, objects, BULK_CHUNK):
        chunk = range(start, min(start + BULK_CHUNK, objects))
        s3.put_objects(BUCKET, {key_of("base", i): csv_object(i * ROWS_PER_OBJECT) for i in chunk})
    return time.monotonic() - started


def key_of(group: str, index: int) -> str:
    return f"{PREFIX}{group}-{index:06}.csv"


def put_new(s3: S3Server, round_no: int, count: int) -> tuple[str, float]:
    """PUT ``count`` new objects over HTTP (16 threads); their glob and the seconds taken."""
    client = s3.client()
    group = f"new-r{round_no}"
    first_id = 10**9 * round_no

    def put(index: int) -> None:
        body = csv_object(first_id + index * ROWS_PER_OBJECT)
        client.put_object(Bucket=BUCKET, Key=key_of(group, index), Body=body)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, range(count)))
    return f"{BUCKET}/{PREFIX}{group}-*.csv", time.monotonic() - started


class Bench:
    """The server, the work folder and how each contender is run and checked."""

    def __init__(self, s3: S3Server, work: Path) -> None:
        self.s3 = s3
        self.work = work
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work)}
        self.db = work / "incremental.duckdb"
        self.server = psutil.Process(s3.process.proc.pid)

    def ingest_argv(self, table: str, db: Path) -> list[str]:
        return [
            str(KINGEST), "ingest", "--source-uri", self.s3.uri(), "--source-table", table,
            "--dest-uri", f"duckdb:///{db}", "--dest-table", "bench.t",
            "--incremental-strategy", "append", "--progress", "none", "--yes",
        ]  # fmt: skip

    def measure(self, name: str, argv: list[str], series: Series | None = None) -> str:
        """Run one contender; its output. Adds wall time, peak RSS and load to ``series``."""
        load = os.getloadavg()[0]
        children, server = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)), self._server_cpu()
        run = run_measured(argv, self.env, self.work)
        elapsed, peak_mb, code, output = run.wall_s, run.peak_rss / 2**20, run.code, run.output
        cpu = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - children
        server_cpu = self._server_cpu() - server
        if code != 0:
            raise BenchFailure(f"{name} failed (exit {code}): {output.strip()[-800:]}")
        if series is not None:
            series.times.append(elapsed)
            series.cpus.append(cpu)
            series.server_cpus.append(server_cpu)
            series.peaks_mb.append(peak_mb)
            series.loads.append(load)
        print(
            f"  {name:12} {elapsed:8.2f} s  cpu {cpu:6.2f} s + server {server_cpu:6.2f} s  "
            f"{peak_mb:5.0f} MB  (load {load:.1f})",
            flush=True,
        )
        return output

    def _server_cpu(self) -> float:
        times = self.server.cpu_times()
        return times.user + times.system

    def listing(self, series: Series, name: str, prefix: str, expected: int) -> None:
        """The bare boto3 listing of ``prefix`` in its own process, checked to see ``expected``."""
        argv = [sys.executable, "-c", LISTING, self.s3.endpoint_url, self.s3.access_key_id,
                self.s3.secret_access_key, BUCKET, prefix]  # fmt: skip
        counted = int(self.measure(name, argv, series).strip().splitlines()[-1])
        if counted != expected:
            raise BenchFailure(f"{name} counted {counted} objects under {prefix}, not {expected}")

    def ingest(
        self, name: str, table: str, db: Path, files: int, skipped: int, series: Series | None
    ) -> dict[str, Any]:
        """One ``kingest ingest`` append, checked: ``files`` loaded, ``skipped`` skipped."""
        output = self.measure(name, self.ingest_argv(table, db), series)
        result = json.loads(output.strip().splitlines()[-1])
        got = (result.get("files"), result.get("files_skipped"), result.get("rows"))
        if got != (files, skipped, files * ROWS_PER_OBJECT):
            raise BenchFailure(
                f"{name}: loaded (files, skipped, rows) = {got}, "
                f"expected {(files, skipped, files * ROWS_PER_OBJECT)}"
            )
        return result

    def profile(self, table: str, out: Path) -> None:
        """One incremental run under cProfile (not counted); prints the top of its profile."""
        argv = [sys.executable, "-m", "cProfile", "-o", str(out), *self.ingest_argv(table, self.db)]
        self.measure("profiled", argv)
        stats = pstats.Stats(str(out))
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(20)


def run_rounds(bench: Bench, args: argparse.Namespace, report: dict[str, Any]) -> None:
    """The measured rounds; each adds NEW objects first, then runs the contenders."""
    series = {name: Series() for name in ("startup", "listing", "load_new", "incremental")}
    puts: list[float] = []
    total = args.objects
    for round_no in range(1, args.rounds + 1):
        glob, put_s = put_new(bench.s3, round_no, args.new)
        puts.append(put_s)
        total += args.new
        print(f"round {round_no}: {args.new} new objects PUT in {put_s:.2f} s", flush=True)
        steps = {
            "startup": partial(bench.listing, series["startup"], "startup", "empty/", 0),
            "listing": partial(bench.listing, series["listing"], "listing", PREFIX, total),
            "load_new": partial(
                bench.ingest, "load_new", glob, bench.work / f"new-{round_no}.duckdb",
                args.new, 0, series["load_new"],
            ),
            "incremental": partial(
                bench.ingest, "incremental", f"{BUCKET}/{PREFIX}*.csv", bench.db,
                args.new, total - args.new, series["incremental"],
            ),
        }  # fmt: skip
        order = list(steps)
        shift = (round_no - 1) % len(order)
        for name in order[shift:] + order[:shift]:
            steps[name]()
    report["http_put"] = {
        "objects_per_round": args.new,
        "median_s": round(statistics.median(puts), 3),
        "objects_per_s": round(args.new / statistics.median(puts)),
    }
    report["contenders"] = {name: s.summary() for name, s in series.items()}
    startup, listing, load_new, incremental = (
        statistics.median(series[n].times)
        for n in ("startup", "listing", "load_new", "incremental")
    )
    per_round = [
        i / (li + ln)
        for li, ln, i in zip(
            series["listing"].times, series["load_new"].times, series["incremental"].times,
            strict=True,
        )
    ]  # fmt: skip
    report["incremental_vs_listing_plus_load_new"] = {
        "ratio_of_medians": round(incremental / (listing + load_new), 2),
        "median_of_round_ratios": round(statistics.median(per_round), 2),
        # Both baselines start a Python process with boto3: one start-up is counted twice.
        "ratio_one_startup_counted": round(incremental / (listing + load_new - startup), 2),
        "beyond_listing_and_load_new_s": round(incremental - (listing + load_new - startup), 2),
        "listing_share_of_incremental": round(listing / incremental, 2),
    }
    cpu = {name: series[name].median_total_cpu() for name in series}
    report["cpu_incremental_vs_listing_plus_load_new"] = {
        "ratio": round(cpu["incremental"] / (cpu["listing"] + cpu["load_new"] - cpu["startup"]), 2),
        "beyond_s": round(
            cpu["incremental"] - (cpu["listing"] + cpu["load_new"] - cpu["startup"]), 2
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--objects", type=int, default=100_000, help="objects loaded in setup (default 100,000)"
    )
    parser.add_argument("--new", type=int, default=100, help="new objects per round (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--profile", action="store_true", help="profile one more round")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kingest-incremental-"))
    s3 = S3Server(work)
    report: dict[str, Any] = {
        "objects": args.objects,
        "new": args.new,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 1),
    }
    try:
        s3.client().create_bucket(Bucket=BUCKET)
        bench = Bench(s3, work)
        seconds = seed(s3, args.objects)
        report["seed"] = {
            "bulk_s": round(seconds, 2),
            "objects_per_s": round(args.objects / seconds),
        }
        print(f"seeded {args.objects:,} objects in bulk in {seconds:.1f} s", flush=True)
        first = Series()
        print("setup: first load of everything", flush=True)
        bench.ingest("first_load", f"{BUCKET}/{PREFIX}*.csv", bench.db, args.objects, 0, first)
        report["first_load"] = {
            **first.summary(),
            "ms_per_file": round(first.times[0] / args.objects * 1000, 2),
        }
        run_rounds(bench, args, report)
        if args.profile:
            put_new(s3, args.rounds + 1, args.new)
            bench.profile(f"{BUCKET}/{PREFIX}*.csv", work / "incremental.prof")
    except BenchFailure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "incremental_sync.json").write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report)
    return 0


def print_summary(report: dict[str, Any]) -> None:
    print(f"\n{report['objects']:,} objects loaded, {report['new']} new per round, "
          f"{report['rounds']} rounds (medians)")  # fmt: skip
    first = report["first_load"]
    print(f"  first load      {first['median_s']:8.2f} s  {first['peak_rss_mb']:6} MB  "
          f"({first['ms_per_file']} ms per file)")  # fmt: skip
    for name, entry in report["contenders"].items():
        print(f"  {name:15} {entry['median_s']:8.2f} s  cpu {entry['median_cpu_s']:6.2f} s + "
              f"server {entry['median_server_cpu_s']:6.2f} s  {entry['peak_rss_mb']:6} MB  "
              f"load {entry['load_avg_1m']}")  # fmt: skip
    ratio = report["incremental_vs_listing_plus_load_new"]
    print(
        f"  incremental / (listing + load_new) = {ratio['ratio_of_medians']} "
        f"(median of per-round ratios {ratio['median_of_round_ratios']}; "
        f"{ratio['ratio_one_startup_counted']} counting one process start-up, "
        f"{ratio['beyond_listing_and_load_new_s']} s beyond both); "
        f"the listing is {ratio['listing_share_of_incremental']:.0%} of the incremental run"
    )
    cpu = report["cpu_incremental_vs_listing_plus_load_new"]
    print(
        f"  in CPU seconds (process tree + S3 server): incremental / (listing + load_new - "
        f"startup) = {cpu['ratio']}, {cpu['beyond_s']} s beyond"
    )
    print(f"results: {RESULTS / 'incremental_sync.json'}")


if __name__ == "__main__":
    sys.exit(main())
