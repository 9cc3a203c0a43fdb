"""Benchmark: S3 files -> DuckDB with kingest, a hand-written reference and ingestr peers.

    .venv/bin/python bench/s3_to_duckdb.py [--rows 1000000] [--files 10] [--skip-peers]

Generates ROWS x 10 mixed columns (ints with nulls, floats, strings with commas and quotes,
booleans, timestamps, dates) in FILES files per format (csv, jsonl, parquet) on a local moto
S3 server, then measures each workflow as a whole process: wall time, rows/s, peak RSS
(process tree, sampled every 20 ms). Ratios are against the reference in the same run.

Peers (ingestr 1.1.22 with its bundled Go binary, ingestr 0.14.155 on dlt) are installed into
their own venvs under ``bench/.peers``; if that fails here (no registry access), the script
says so and measures kingest against the reference only.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.platform.s3 import S3Server  # noqa: E402

KINGEST = ROOT / ".venv" / "bin" / "kingest"
PEERS = {"ingestr-1.1.22": "ingestr==1.1.22", "ingestr-0.14.155": "ingestr==0.14.155"}

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


def generate(rows: int, seed: int) -> pa.Table:
    """ROWS x 10 mixed columns, deterministic (plain Python: numpy is not a dependency)."""
    import random
    from datetime import date, datetime, timedelta

    rng = random.Random(seed)
    start = seed * rows
    epoch, day0 = datetime(2024, 1, 1), date(2020, 1, 1)
    cities = ["Berlin", "Köln", "Paris, FR", 'the "Big" Apple']
    return pa.table(
        {
            "id": pa.array(range(start, start + rows), pa.int64()),
            "quantity": pa.array(
                [None if i % 10 == 0 else rng.randrange(1000) for i in range(rows)]
            ),
            "price": pa.array([rng.random() * 100 for _ in range(rows)]),
            "ratio": pa.array([rng.gauss(0, 1) for _ in range(rows)]),
            "name": pa.array([f'item {i}, "quoted"' for i in range(start, start + rows)]),
            "city": pa.array([cities[i % 4] for i in range(rows)]),
            "active": pa.array([i % 3 == 0 for i in range(rows)]),
            "created_at": pa.array(
                [epoch + timedelta(seconds=rng.randrange(10**7)) for _ in range(rows)],
                pa.timestamp("us"),
            ),
            "day": pa.array([day0 + timedelta(days=i % 1000) for i in range(rows)], pa.date32()),
            "note": pa.array([None if i % 7 == 0 else f"n{i}" for i in range(rows)]),
        }
    )


def upload(s3: S3Server, bucket: str, rows: int, files: int) -> None:
    """Write the data set in csv, jsonl and parquet below ``<bucket>/<format>/``."""
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    per_file = rows // files
    for index in range(files):
        table = generate(per_file, index)
        sink = io.BytesIO()
        pq.write_table(table, sink)
        client.put_object(Bucket=bucket, Key=f"parquet/part-{index}.parquet", Body=sink.getvalue())
        sink = io.BytesIO()
        pa_csv.write_csv(table, sink)
        client.put_object(Bucket=bucket, Key=f"csv/part-{index}.csv", Body=sink.getvalue())
        import duckdb

        with duckdb.connect() as con:
            con.register("t", table)
            path = Path(tempfile.mkdtemp()) / "x.jsonl"
            con.execute(f"COPY t TO '{path}' (FORMAT json)")
            client.put_object(
                Bucket=bucket, Key=f"jsonl/part-{index}.jsonl", Body=path.read_bytes()
            )
            path.unlink()


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB (process tree) and exit code of one process."""
    started = time.monotonic()
    process = psutil.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.monotonic() - started
    if process.returncode != 0:
        print(f"    failed ({process.returncode}): {process.stderr.read().decode()[-500:]}")
    return wall, peak / 1e6, process.returncode


def install_peer(name: str, spec: str) -> Path | None:
    """A venv with ``spec`` installed, or None (with the reason printed)."""
    venv = ROOT / "bench" / ".peers" / name
    exe = venv / "bin" / "ingestr"
    if exe.exists():
        return exe
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", spec], check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"  cannot install {spec} here ({exc}); measuring without it")
        return None
    return exe if exe.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kingest-bench-"))
    s3 = S3Server(work)
    try:
        bucket = "bench"
        print(f"generating {args.rows:,} rows x 10 columns in {args.files} files per format ...")
        upload(s3, bucket, args.rows, args.files)
        peers = {} if args.skip_peers else {n: install_peer(n, s) for n, s in PEERS.items()}
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        for fmt in ("csv", "jsonl", "parquet"):
            print(f"\n{fmt} -> DuckDB")
            runs: dict[str, tuple[float, float, int]] = {}
            db = work / f"ref-{fmt}.duckdb"
            runs["reference"] = measure(
                [sys.executable, "-c", REFERENCE, s3.endpoint_url, s3.access_key_id,
                 s3.secret_access_key, bucket, fmt, str(db)], env,
            )  # fmt: skip
            ingest = ["--source-uri", s3.uri(), "--source-table", f"{bucket}/{fmt}/*.{fmt}",
                      "--dest-table", "bench.t", "--yes"]  # fmt: skip
            runs["kingest"] = measure(
                [str(KINGEST), "ingest", *ingest, "--dest-uri", f"duckdb:///{work}/k-{fmt}.duckdb"],
                env,
            )
            for name, exe in peers.items():
                if exe is not None:
                    uri = f"duckdb:///{work}/{name}-{fmt}.duckdb"
                    runs[name] = measure([str(exe), "ingest", *ingest, "--dest-uri", uri], env)
            ref_wall = runs["reference"][0]
            for name, (wall, rss, code) in runs.items():
                status = "" if code == 0 else f"  (exit {code})"
                print(
                    f"  {name:18} {wall:7.2f} s  {args.rows / wall:12,.0f} rows/s  "
                    f"peak RSS {rss:7.0f} MB  {wall / ref_wall:5.2f}x reference{status}"
                )
    finally:
        s3.stop()


if __name__ == "__main__":
    main()
