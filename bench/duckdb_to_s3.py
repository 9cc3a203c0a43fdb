"""Benchmark: a 1,000,000-row DuckDB table into S3 parquet, kingest against its peers.

    .venv/bin/python bench/duckdb_to_s3.py [--rows 1000000] [--runs 3] [--skip-peers]
        [--skip-native] [--baseline KINGEST]

Every contender runs as its own process against the same local S3 server (the test
platform's moto server, over HTTP on loopback), in rounds so that machine noise hits all
of them alike:

- ``reference``: DuckDB ``COPY ... TO`` a local parquet file, then one boto3 upload - the
  floor for "DuckDB table -> parquet object" on this machine;
- ``duckdb-native``: DuckDB's own ``COPY users TO 's3://...' (FORMAT parquet)`` through its
  httpfs extension (issue 14's reference; DuckDB 1.5.5 in its own venv, see
  ``bench.peers.ensure_native``: PyPI has no httpfs build for this project's DuckDB 2.0, and
  DuckDB 1.5 cannot open a DuckDB 2 file, so it reads a copy of the table written by itself);
- ``kingest``: ``kingest ingest`` (this repository);
- ``ingestr-1.1.22``: ingestr's Go release. Offline it cannot download its DuckDB ADBC
  driver, so it is given a driver manifest (``ADBC_DRIVER_PATH``) pointing at the DuckDB
  library that the ``duckdb`` Python wheel ships (it exports ``duckdb_adbc_init``; libpython
  is preloaded because that library expects it);
- ``ingestr-0.14.155``: ingestr's last Python release (dlt). Its DuckDB (1.4) cannot read
  this repository's DuckDB 2 file, so it reads a copy of the same table written by its own
  DuckDB.

Peers are installed into their own virtualenvs under ``bench/results/peers`` (from PyPI,
once); a peer that cannot be installed or run is reported as such. Reported per contender:
median and best wall time, the ratio of the median to the reference's median and to
DuckDB-native's (kingest's target: <= 1.1x, bookkeeping objects included), peak RSS of
the process tree (sampled every 10 ms), data files, row groups, and the rows visible under
its prefix after all runs (a "replace" that leaves older objects behind shows up there).
Results also go to ``bench/results/duckdb_to_s3.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers import (  # noqa: E402 - needs the repository root on sys.path
    NATIVE_DUCKDB,
    NATIVE_PRELUDE,
    PEER_VERSIONS,
    PEERS,
    RESULTS,
    base_env,
    ensure_native,
    ensure_peer,
    peer_env,
    run_measured,
)
from tests.platform.s3 import S3Server  # noqa: E402

WORK = RESULTS / "duckdb_to_s3"
BUCKET = "bench"
NATIVE = f"duckdb-{NATIVE_DUCKDB}-httpfs"
MAX_NATIVE_RATIO = 1.1

NATIVE_COPY = (
    NATIVE_PRELUDE
    + """
import sys
db, endpoint, key, secret = sys.argv[1:5]
con = native_connect(":memory:", endpoint, key, secret)
con.execute(f"ATTACH '{db}' AS src (READ_ONLY)")
con.execute("COPY src.users TO 's3://bench/native/users.parquet' (FORMAT parquet)")
"""
)

TABLE_SQL = """
CREATE TABLE users AS
SELECT range AS id,
       'user_' || range AS name,
       'user' || range || '@example.com' AS email,
       (hash(range) % 100000) / 100.0 AS amount,
       TIMESTAMP '2024-01-01' + to_seconds(range * 37) AS created_at,
       range % 3 = 0 AS active,
       ['de', 'fr', 'us', 'br', 'in', 'jp'][1 + (range % 6)::INT] AS country,
       random() AS score
FROM range({rows})
"""


@dataclass
class Contender:
    name: str
    argv: list[str]
    prefix: str
    env: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None
    times: list[float] = field(default_factory=list)
    peaks_mb: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def make_sources(rows: int) -> tuple[Path, Path | None, str | None]:
    """Our DuckDB file, and the same table for ingestr 0.14 (its own DuckDB version)."""
    WORK.mkdir(parents=True, exist_ok=True)
    ours = WORK / f"users-{rows}.duckdb"
    if not ours.exists():
        with duckdb.connect(str(ours)) as con:
            con.execute(TABLE_SQL.format(rows=rows))
    old_python = PEERS / "ingestr-0.14.155" / "bin" / "python"
    if not old_python.exists():
        return ours, None, "not installed"
    theirs = WORK / f"users-{rows}-duckdb-ingestr-0.14.duckdb"
    problem = copy_table(ours, theirs, old_python)
    return ours, None if problem else theirs, problem


def native_source(rows: int, ours: Path, python: Path) -> tuple[Path | None, str | None]:
    """The table in a DuckDB file of the native DuckDB's own version (written once)."""
    theirs = WORK / f"users-{rows}-duckdb-{NATIVE_DUCKDB}.duckdb"
    problem = copy_table(ours, theirs, python)
    return None if problem else theirs, problem


def copy_table(ours: Path, theirs: Path, python: Path) -> str | None:
    """Write table ``users`` of ``ours`` into ``theirs`` with the DuckDB of ``python`` (once),
    through a Parquet file; the reason if that fails."""
    if theirs.exists():
        return None
    exported = WORK / f"{theirs.stem}-export.parquet"
    with duckdb.connect(str(ours), read_only=True) as con:
        con.execute(f"COPY users TO '{exported}' (FORMAT parquet)")
    script = (
        "import duckdb, sys\n"
        "con = duckdb.connect(sys.argv[1])\n"
        'con.execute("CREATE TABLE users AS SELECT * FROM read_parquet(?)", [sys.argv[2]])\n'
        "con.close()\n"
    )
    # Not from the repository root, whose operator/ folder would shadow the standard library's.
    done = subprocess.run(
        [str(python), "-c", script, str(theirs), str(exported)],
        capture_output=True,
        text=True,
        cwd=WORK,
    )
    exported.unlink(missing_ok=True)
    if done.returncode != 0:
        return f"cannot write its DuckDB copy: {done.stderr.strip()[-300:]}"
    return None


def visible(s3: S3Server, prefix: str) -> dict[str, int]:
    """Parquet files, row groups and rows under ``prefix`` (bookkeeping objects excluded)."""
    client = s3.client()
    stats = {"files": 0, "row_groups": 0, "rows": 0, "largest_row_group": 0}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            if not item["Key"].endswith(".parquet"):
                continue
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            meta = pq.ParquetFile(io.BytesIO(body)).metadata
            stats["files"] += 1
            stats["row_groups"] += meta.num_row_groups
            stats["rows"] += meta.num_rows
            for i in range(meta.num_row_groups):
                size = meta.row_group(i).num_rows
                stats["largest_row_group"] = max(stats["largest_row_group"], size)
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in the table (default 1,000,000)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per contender (default 3)")
    parser.add_argument("--skip-peers", action="store_true", help="leave out the ingestr peers")
    parser.add_argument(
        "--skip-native", action="store_true", help="leave out DuckDB-native (httpfs COPY)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="KINGEST",
        help="another build's kingest executable, measured as kingest-baseline",
    )
    args = parser.parse_args()

    peers: dict[str, tuple[Path | None, str | None]] = {}
    if not args.skip_peers:
        for version in PEER_VERSIONS:
            print(f"peer ingestr {version}: ensuring its virtualenv ...", flush=True)
            peers[version] = ensure_peer(version)
    ours, theirs, old_copy_problem = make_sources(args.rows)
    native_db: Path | None = None
    native_python: Path | None = None
    native_problem: str | None = None
    if not args.skip_native:
        print(f"DuckDB {NATIVE_DUCKDB} with httpfs: ensuring its virtualenv ...", flush=True)
        native_python, native_problem = ensure_native()
        if native_python is not None:
            native_db, native_problem = native_source(args.rows, ours, native_python)

    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    s3 = S3Server(logs)
    try:
        s3.client().create_bucket(Bucket=BUCKET)
        env = base_env(WORK)
        keys = f"access_key_id={s3.access_key_id}&secret_access_key={s3.secret_access_key}"
        dest_uri = f"s3://?{keys}&endpoint_url={s3.endpoint_url}"
        reference = (
            "import sys, duckdb, boto3\n"
            "con = duckdb.connect(sys.argv[1], read_only=True)\n"
            "con.execute(f\"COPY (SELECT * FROM users) TO '{sys.argv[2]}' (FORMAT parquet)\")\n"
            "boto3.client('s3', endpoint_url=sys.argv[3], aws_access_key_id=sys.argv[4],\n"
            "    aws_secret_access_key=sys.argv[5], region_name='us-east-1'\n"
            ").upload_file(sys.argv[2], 'bench', 'reference/users.parquet')\n"
        )
        contenders = [
            Contender(
                "reference",
                [
                    sys.executable,
                    "-c",
                    reference,
                    str(ours),
                    str(WORK / "reference.parquet"),
                    s3.endpoint_url,
                    s3.access_key_id,
                    s3.secret_access_key,
                ],
                "reference/",
            ),
            Contender(
                "kingest",
                [
                    str(ROOT / ".venv" / "bin" / "kingest"),
                    "ingest",
                    "--source-uri",
                    f"duckdb:///{ours}",
                    "--source-table",
                    "users",
                    "--dest-uri",
                    dest_uri,
                    "--dest-table",
                    f"{BUCKET}/kingest",
                    "--progress",
                    "none",
                ],
                "kingest/",
            ),
        ]
        if args.baseline:
            argv = [str(args.baseline), *contenders[-1].argv[1:]]
            argv[argv.index(f"{BUCKET}/kingest")] = f"{BUCKET}/kingest_baseline"
            contenders.append(Contender("kingest-baseline", argv, "kingest_baseline/"))
        if not args.skip_native:
            contenders.insert(
                1,
                Contender(
                    NATIVE,
                    [str(native_python), "-c", NATIVE_COPY, str(native_db), s3.endpoint_url,
                     s3.access_key_id, s3.secret_access_key],
                    "native/",
                    unavailable=native_problem,
                ),
            )  # fmt: skip
        for version, (exe, problem) in peers.items():
            prefix = "ingestr_" + version.replace(".", "_")  # dlt normalizes dataset names
            source = ours if version.startswith("1.") else theirs
            contender = Contender(
                f"ingestr-{version}",
                [
                    str(exe),
                    "ingest",
                    "--source-uri",
                    f"duckdb:///{source}",
                    "--source-table",
                    "main.users",
                    "--dest-uri",
                    dest_uri,
                    "--dest-table",
                    f"{BUCKET}/{prefix}",
                    "--yes",
                ],
                prefix + "/",
                unavailable=problem,
            )
            contender.env = peer_env(version, WORK)
            if not version.startswith("1.") and old_copy_problem:
                contender.unavailable = contender.unavailable or old_copy_problem
            contenders.append(contender)

        for round_no in range(1, args.runs + 1):
            for c in contenders:
                if c.unavailable:
                    continue
                run = run_measured(c.argv, {**env, **c.env}, WORK)
                elapsed, peak = run.wall_s, run.peak_rss / 2**20
                if run.code != 0:
                    c.failures.append(f"exit {run.code}: {run.output.strip()[-600:]}")
                    print(f"round {round_no} {c.name}: FAILED (exit {run.code})", flush=True)
                    continue
                c.times.append(elapsed)
                c.peaks_mb.append(peak)
                print(f"round {round_no} {c.name}: {elapsed:.2f} s, {peak:.0f} MB", flush=True)

        ref_median = statistics.median(contenders[0].times) if contenders[0].times else None
        native = next((c for c in contenders if c.name == NATIVE and c.times), None)
        native_median = statistics.median(native.times) if native else None
        report: dict[str, Any] = {"rows": args.rows, "runs": args.runs, "contenders": {}}
        print()
        header = (
            f"{'contender':<22}{'median s':>9}{'best s':>8}{'x ref':>7}{'x native':>9}"
            f"{'peak MB':>9}{'files':>7}{'row groups':>11}{'rows visible':>14}"
        )
        print(header)
        print("-" * len(header))
        for c in contenders:
            entry: dict[str, Any] = {"argv0": Path(c.argv[0]).name}
            if c.unavailable or not c.times:
                reason = c.unavailable or "; ".join(c.failures)[:300]
                entry["unavailable"] = reason
                report["contenders"][c.name] = entry
                print(f"{c.name:<22}  not measured: {reason[:150]}")
                continue
            median = statistics.median(c.times)
            out = visible(s3, c.prefix)
            ratio = median / ref_median if ref_median else float("nan")
            to_native = median / native_median if native_median else float("nan")
            entry |= {
                "median_s": round(median, 3),
                "best_s": round(min(c.times), 3),
                "times_s": [round(t, 3) for t in c.times],
                "ratio_to_reference": round(ratio, 2),
                "ratio_to_native": round(to_native, 2) if native_median else None,
                "peak_rss_mb": round(max(c.peaks_mb)),
                **out,
                "failures": c.failures,
            }
            report["contenders"][c.name] = entry
            print(
                f"{c.name:<22}{median:>9.2f}{min(c.times):>8.2f}{ratio:>7.2f}{to_native:>9.2f}"
                f"{max(c.peaks_mb):>9.0f}{out['files']:>7}{out['row_groups']:>11}"
                f"{out['rows']:>14,}"
            )
        (RESULTS / "duckdb_to_s3.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nresults: {RESULTS / 'duckdb_to_s3.json'}")
        ours_entry = report["contenders"].get("kingest", {})
        if "median_s" in ours_entry:
            peers_measured = [
                v["median_s"]
                for k, v in report["contenders"].items()
                if k.startswith("ingestr") and "median_s" in v
            ]
            print(
                "targets: within 1.3x of reference: "
                f"{'yes' if ours_entry['ratio_to_reference'] <= 1.3 else 'NO'}"
                f" ({ours_entry['ratio_to_reference']}x); peak RSS < 300 MB: "
                f"{'yes' if ours_entry['peak_rss_mb'] < 300 else 'NO'}"
                f" ({ours_entry['peak_rss_mb']} MB); ahead of every measured peer: "
                f"{'yes' if all(ours_entry['median_s'] < p for p in peers_measured) else 'NO'}"
            )
            if ours_entry["ratio_to_native"] is not None:
                within = ours_entry["ratio_to_native"] <= MAX_NATIVE_RATIO
                print(
                    f"issue 14: {ours_entry['ratio_to_native']}x DuckDB-native COPY "
                    f"(<= {MAX_NATIVE_RATIO}): {'yes' if within else 'NO'}"
                )
    finally:
        s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
