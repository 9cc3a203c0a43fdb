"""Benchmark: S3 files -> DuckDB with kingest, a hand-written reference and ingestr peers.

    .venv/bin/python bench/s3_to_duckdb.py [--rows 1000000] [--files 10] [--columns 10]
        [--runs 3] [--peer-runs 1] [--peer-timeout SECONDS] [--skip-peers]
        [--formats csv,jsonl,parquet]

One large object (issue 14's case): ``--rows 2000000 --files 1 --columns 6 --skip-peers``
(its Parquet file in 8 row groups, as in the issue; ``--row-groups`` sets another count).

Generates ROWS x COLUMNS (up to 10) mixed columns (ints with nulls, floats, strings with
commas and quotes, timestamps, booleans, dates) in FILES files per format (csv, jsonl,
parquet) on a local moto S3 server, then measures, format by format and in rounds (so that
machine noise hits all contenders alike), each workflow as a whole process: wall time,
rows/s, peak RSS of the process tree. Contenders:

- ``reference``: pyarrow reads the files from S3 as a dataset, DuckDB ``CREATE TABLE AS``;
- ``duckdb-native``: DuckDB reads the same objects with its own httpfs extension
  (``CREATE TABLE AS SELECT * FROM read_csv('s3://...')``), in the venv of
  ``bench.peers.ensure_native`` (PyPI's ``duckdb-extension-httpfs`` has no build for this
  project's DuckDB 2.0, so it is DuckDB 1.5's);
- ``kingest``: ``kingest ingest`` (this repository);
- ``kingest-baseline``: with ``--baseline PATH``, another build's ``kingest`` executable (e.g.
  a checkout of the main branch in its own venv), for before/after ratios from one run;
- ``ingestr-1.1.22`` and ``ingestr-0.14.155``: see ``bench/peers.py``. They take from seconds
  to minutes per format (ingestr 0.14.155 about 5 on JSONL), so they run ``--peer-runs`` rounds
  (one by default) instead of ``--runs``; ``--peer-timeout`` stops a peer run that takes longer
  (said so in the output and the results).

Reported per contender and format: median wall time, rows/s, the ratio of its median to the
reference's and to DuckDB-native's, the highest peak RSS of its runs, and what it loaded
(row count and column types of its table: peers that lose types show here). Results go to
``bench/results/s3_to_duckdb.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers import (  # noqa: E402 - needs the repository root on sys.path
    NATIVE_DUCKDB,
    NATIVE_PRELUDE,
    PEER_VERSIONS,
    RESULTS,
    base_env,
    ensure_native,
    ensure_peer,
    peer_env,
    run_measured,
)
from tests.platform.s3 import S3Server  # noqa: E402

KINGEST = ROOT / ".venv" / "bin" / "kingest"
WORK = RESULTS / "s3_to_duckdb"
BUCKET = "bench"
FORMATS = ("csv", "jsonl", "parquet")
# Issue #3's targets: the ratio of kingest's median wall time to the reference's, per format.
MAX_RATIO = {"csv": 1.2, "jsonl": 1.2, "parquet": 1.1}
MAX_RSS_MB = 500
# Issue #14's targets: kingest's median over DuckDB-native's, for one object / many files.
MAX_NATIVE_RATIO_ONE_OBJECT = 1.0
MAX_NATIVE_RATIO_MANY_FILES = 0.8
NATIVE = f"duckdb-{NATIVE_DUCKDB}-httpfs"

REFERENCE = """
import sys, duckdb, pyarrow.dataset as ds, pyarrow.fs as fs
endpoint, key, secret, bucket, fmt, db = sys.argv[1:7]
s3 = fs.S3FileSystem(access_key=key, secret_key=secret, endpoint_override=endpoint.split("://")[1],
                     scheme="http", region="us-east-1")
dataset = ds.dataset(f"{bucket}/{fmt}/", filesystem=s3, format="json" if fmt == "jsonl" else fmt)
reader = dataset.scanner().to_reader()
con = duckdb.connect(db)
con.execute("CREATE TABLE t AS SELECT * FROM reader")
print(con.execute("SELECT count(*) FROM t").fetchone()[0])
"""

NATIVE_SCRIPT = (
    NATIVE_PRELUDE
    + """
import sys
endpoint, key, secret, bucket, fmt, db = sys.argv[1:7]
con = native_connect(db, endpoint, key, secret)
read = {"csv": "read_csv", "jsonl": "read_json", "parquet": "read_parquet"}[fmt]
con.execute(f"CREATE TABLE t AS SELECT * FROM {read}('s3://{bucket}/{fmt}/*.{fmt}')")
print(con.execute("SELECT count(*) FROM t").fetchone()[0])
"""
)


@dataclass
class Contender:
    """One workflow on one format: how to run it and what its runs measured."""

    name: str
    argv: list[str]
    database: Path
    table: str
    env: dict[str, str] = field(default_factory=dict)
    runs: int = 1
    walls: list[float] = field(default_factory=list)
    peaks_mb: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def generate(rows: int, seed: int, columns: int = 10) -> pa.Table:
    """ROWS x COLUMNS (of 10) mixed columns, deterministic (plain Python: numpy is not a
    dependency)."""
    import random
    from datetime import date, datetime, timedelta

    rng = random.Random(seed)
    start = seed * rows
    epoch, day0 = datetime(2024, 1, 1), date(2020, 1, 1)
    cities = ["Berlin", "Köln", "Paris, FR", 'the "Big" Apple']
    makers = {
        "id": lambda: pa.array(range(start, start + rows), pa.int64()),
        "quantity": lambda: pa.array(
            [None if i % 10 == 0 else rng.randrange(1000) for i in range(rows)]
        ),
        "price": lambda: pa.array([rng.random() * 100 for _ in range(rows)]),
        "ratio": lambda: pa.array([rng.gauss(0, 1) for _ in range(rows)]),
        "name": lambda: pa.array([f'item {i}, "quoted"' for i in range(start, start + rows)]),
        "created_at": lambda: pa.array(
            [epoch + timedelta(seconds=rng.randrange(10**7)) for _ in range(rows)],
            pa.timestamp("us"),
        ),
        "city": lambda: pa.array([cities[i % 4] for i in range(rows)]),
        "active": lambda: pa.array([i % 3 == 0 for i in range(rows)]),
        "day": lambda: pa.array(
            [day0 + timedelta(days=i % 1000) for i in range(rows)], pa.date32()
        ),
        "note": lambda: pa.array([None if i % 7 == 0 else f"n{i}" for i in range(rows)]),
    }
    return pa.table({name: make() for name, make in list(makers.items())[:columns]})


def upload(s3: S3Server, rows: int, files: int, columns: int, row_groups: int | None) -> None:
    """Write the data set in csv, jsonl and parquet below ``<bucket>/<format>/``; each Parquet
    file in ``row_groups`` row groups (None: pyarrow's default, 1 Mi rows per group)."""
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    per_file = rows // files
    group_rows = -(-per_file // row_groups) if row_groups else None
    for index in range(files):
        table = generate(per_file, index, columns)
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=group_rows)
        client.put_object(Bucket=BUCKET, Key=f"parquet/part-{index}.parquet", Body=sink.getvalue())
        sink = io.BytesIO()
        pa_csv.write_csv(table, sink)
        client.put_object(Bucket=BUCKET, Key=f"csv/part-{index}.csv", Body=sink.getvalue())
        with duckdb.connect() as con, tempfile.TemporaryDirectory() as folder:
            con.register("t", table)
            path = Path(folder) / "part.jsonl"
            con.execute(f"COPY t TO '{path}' (FORMAT json)")
            client.put_object(
                Bucket=BUCKET, Key=f"jsonl/part-{index}.jsonl", Body=path.read_bytes()
            )


def contenders(
    fmt: str,
    s3: S3Server,
    peers: dict[str, Path],
    runs: int,
    peer_runs: int,
    native: Path | None,
    baseline: Path | None = None,
    with_reference: bool = True,
) -> list[Contender]:
    """The reference, DuckDB-native (if installed), kingest and each installed peer, loading
    ``fmt`` into their own file."""
    keys = [s3.endpoint_url, s3.access_key_id, s3.secret_access_key, BUCKET, fmt]
    found = [
        Contender(
            "reference",
            [sys.executable, "-c", REFERENCE, *keys, str(WORK / f"reference-{fmt}.duckdb")],
            WORK / f"reference-{fmt}.duckdb",
            "main.t",
            runs=runs,
        ),
    ][: 1 if with_reference else 0]
    if native is not None:
        database = WORK / f"native-{fmt}.duckdb"
        found.append(
            Contender(
                NATIVE,
                [str(native), "-c", NATIVE_SCRIPT, *keys, str(database)],
                database,
                "main.t",
                runs=runs,
            )
        )
    ingest = ["--source-uri", s3.uri(), "--source-table", f"{BUCKET}/{fmt}/*.{fmt}",
              "--dest-table", "bench.t", "--yes"]  # fmt: skip
    ours = {"kingest": KINGEST, **({"kingest-baseline": baseline} if baseline else {})}
    for name, exe in {**ours, **peers}.items():
        database = WORK / f"{name}-{fmt}.duckdb"
        contender = Contender(
            name,
            [str(exe), "ingest", *ingest, "--dest-uri", f"duckdb:///{database}"],
            database,
            "bench.t",
            runs=runs if name in ours else peer_runs,
        )
        if name not in ours:
            contender.env = peer_env(name.removeprefix("ingestr-"), WORK)
        found.append(contender)
    return found


def loaded(contender: Contender) -> dict[str, Any]:
    """Rows and column types of the table a contender's last successful run left."""
    try:
        with duckdb.connect(str(contender.database), read_only=True) as con:
            rows = con.execute(f"SELECT count(*) FROM {contender.table}").fetchone()
            types = con.execute(f"DESCRIBE {contender.table}").fetchall()
    except duckdb.Error as exc:
        return {"unreadable": str(exc).splitlines()[0][:200]}
    return {
        "rows_loaded": rows[0] if rows else None,
        "columns": {name: kind for name, kind, *_ in types if not name.startswith("_dlt")},
    }


def measure_format(field_: list[Contender], rounds: int, timeout: float | None) -> None:
    """Run the contenders in ``rounds``, each as many times as it is due, printing each run."""
    env = base_env(WORK)
    for round_no in range(1, rounds + 1):
        for c in field_:
            if round_no > c.runs:
                continue
            for leftover in (c.database, Path(f"{c.database}.wal")):
                leftover.unlink(missing_ok=True)
            limit = timeout if c.name.startswith("ingestr") else None
            run = run_measured(c.argv, {**env, **c.env}, WORK, limit)
            if run.code is None:
                c.failures.append(f"stopped after the peer timeout of {limit:.0f} s")
                print(f"  round {round_no} {c.name:18} STOPPED after {limit:.0f} s", flush=True)
                continue
            if run.code != 0:
                c.failures.append(f"exit {run.code}: {run.output.strip()[-600:]}")
                print(f"  round {round_no} {c.name:18} FAILED (exit {run.code})", flush=True)
                continue
            c.walls.append(run.wall_s)
            c.peaks_mb.append(run.peak_rss / 1e6)
            print(
                f"  round {round_no} {c.name:18} {run.wall_s:7.2f} s  {run.peak_rss / 1e6:6.0f} MB",
                flush=True,
            )


def summarize(field_: list[Contender], rows: int) -> dict[str, Any]:
    """Per-contender medians and ratios for one format, printed and returned for the JSON."""
    reference = next((c for c in field_ if c.name == "reference" and c.walls), None)
    ref_median = statistics.median(reference.walls) if reference else None
    native = next((c for c in field_ if c.name == NATIVE and c.walls), None)
    native_median = statistics.median(native.walls) if native else None
    report: dict[str, Any] = {}
    print(
        f"\n  {'contender':<24}{'median s':>9}{'rows/s':>12}{'x ref':>7}{'x native':>9}"
        f"{'peak MB':>9}  runs"
    )
    for c in field_:
        entry: dict[str, Any] = {"runs": len(c.walls), "failures": c.failures}
        if not c.walls:
            report[c.name] = entry
            reasons = "; ".join(dict.fromkeys(c.failures))  # each distinct reason once
            print(f"  {c.name:<24}  not measured: {reasons[:150]}")
            continue
        median = statistics.median(c.walls)
        ratio = median / ref_median if ref_median else float("nan")
        to_native = median / native_median if native_median else float("nan")
        entry |= {
            "median_s": round(median, 3),
            "times_s": [round(t, 3) for t in c.walls],
            "rows_per_s": round(rows / median),
            "ratio_to_reference": round(ratio, 2) if ref_median else None,
            "ratio_to_native": round(to_native, 2) if native_median else None,
            "peak_rss_mb": round(max(c.peaks_mb)),
            **loaded(c),
        }
        report[c.name] = entry
        print(
            f"  {c.name:<24}{median:>9.2f}{rows / median:>12,.0f}{ratio:>7.2f}{to_native:>9.2f}"
            f"{max(c.peaks_mb):>9.0f}  {len(c.walls)}"
            + (f" (+{len(c.failures)} failed)" if c.failures else "")
        )
    return report


_YES_NO = {True: "yes", False: "NO", None: "not measured"}


def verdict(fmt: str, report: dict[str, Any], files: int) -> dict[str, Any]:
    """Issue #3's and #14's targets for one format, from its report."""
    ours = report.get("kingest", {})
    if "median_s" not in ours:
        return {"measured": False}
    peers = {k: v for k, v in report.items() if k.startswith("ingestr")}
    unmeasured = [k for k, v in peers.items() if "median_s" not in v]
    to_reference = ours["ratio_to_reference"]
    result = {
        "within_ratio": None if to_reference is None else to_reference <= MAX_RATIO[fmt],
        "max_ratio": MAX_RATIO[fmt],
        "rss_below_500_mb": ours["peak_rss_mb"] < MAX_RSS_MB,
        "ahead_of_measured_peers": all(
            ours["median_s"] < v["median_s"] for v in peers.values() if "median_s" in v
        ),
        "peers_not_measured": unmeasured,
    }
    max_native = MAX_NATIVE_RATIO_ONE_OBJECT if files == 1 else MAX_NATIVE_RATIO_MANY_FILES
    if ours.get("ratio_to_native") is not None:
        result["within_native_ratio"] = ours["ratio_to_native"] <= max_native
        result["max_native_ratio"] = max_native
    print(
        f"  targets: {to_reference or '-'}x reference (<= {MAX_RATIO[fmt]}): "
        f"{_YES_NO[result['within_ratio']]}; peak RSS {ours['peak_rss_mb']} MB "
        f"(< {MAX_RSS_MB}): {'yes' if result['rss_below_500_mb'] else 'NO'}; ahead of every "
        f"measured peer: {'yes' if result['ahead_of_measured_peers'] else 'NO'}"
        + (f" (not measured: {', '.join(unmeasured)})" if unmeasured else "")
    )
    if "within_native_ratio" in result:
        print(
            f"  {ours['ratio_to_native']}x DuckDB-native (<= {max_native}): "
            f"{'yes' if result['within_native_ratio'] else 'NO'}"
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows per format (default 1,000,000)"
    )
    parser.add_argument(
        "--files", type=int, default=10, help="files the rows are split into (default 10)"
    )
    parser.add_argument("--columns", type=int, default=10, help="columns, of 10 (default 10)")
    parser.add_argument(
        "--row-groups",
        type=int,
        default=None,
        help="row groups per Parquet file (default: 8 for one file, as in issue 14's setup; "
        "else pyarrow's default of 1 Mi rows per group)",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of kingest and the reference (default 3)"
    )
    parser.add_argument(
        "--peer-runs", type=int, default=1, help="runs of each ingestr peer (default 1)"
    )
    parser.add_argument(
        "--peer-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop a peer run after this long (default: no limit)",
    )
    parser.add_argument("--skip-peers", action="store_true", help="leave out the ingestr peers")
    parser.add_argument(
        "--skip-native", action="store_true", help="leave out DuckDB-native (httpfs)"
    )
    parser.add_argument(
        "--skip-reference", action="store_true", help="leave out the pyarrow-dataset reference"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="KINGEST",
        help="another build's kingest executable, measured as kingest-baseline",
    )
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated, of {','.join(FORMATS)} (default: all)",
    )
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    if unknown := set(formats) - set(FORMATS):
        parser.error(f"unknown formats: {', '.join(sorted(unknown))}")

    peers: dict[str, Path] = {}
    unavailable: dict[str, str] = {}
    if not args.skip_peers:
        for version in PEER_VERSIONS:
            print(f"peer ingestr {version}: ensuring its virtualenv ...", flush=True)
            exe, problem = ensure_peer(version)
            if exe is None:
                unavailable[f"ingestr-{version}"] = problem or "not installed"
                print(f"  not measured: {problem}")
            else:
                peers[f"ingestr-{version}"] = exe
    native: Path | None = None
    if not args.skip_native:
        print(f"DuckDB {NATIVE_DUCKDB} with httpfs: ensuring its virtualenv ...", flush=True)
        native, problem = ensure_native()
        if native is None:
            unavailable[NATIVE] = problem or "not installed"
            print(f"  not measured: {problem}")
    WORK.mkdir(parents=True, exist_ok=True)
    row_groups = args.row_groups or (8 if args.files == 1 else None)
    report: dict[str, Any] = {
        "rows": args.rows,
        "files": args.files,
        "columns": args.columns,
        "row_groups": row_groups,
        "runs": args.runs,
        "peer_runs": args.peer_runs,
        "peer_timeout_s": args.peer_timeout,
        "unavailable": unavailable,
        "formats": {},
    }
    out = RESULTS / "s3_to_duckdb.json"
    s3 = S3Server(WORK)
    try:
        print(
            f"generating {args.rows:,} rows x {args.columns} columns in {args.files} files "
            "per format ..."
        )
        upload(s3, args.rows, args.files, args.columns, row_groups)
        for fmt in formats:
            print(f"\n{fmt} -> DuckDB", flush=True)
            field_ = contenders(
                fmt,
                s3,
                peers,
                args.runs,
                args.peer_runs,
                native,
                args.baseline,
                not args.skip_reference,
            )
            measure_format(field_, max(args.runs, args.peer_runs), args.peer_timeout)
            summary = summarize(field_, args.rows)
            report["formats"][fmt] = {
                "contenders": summary,
                "targets": verdict(fmt, summary, args.files),
            }
            # After each format: a run stopped later keeps what it measured.
            out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        s3.stop()
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
