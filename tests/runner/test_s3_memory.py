"""Bounded memory: peak RSS of a `kingest ingest` process does not grow with the file size."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from tests.platform.s3 import S3Server

KINGEST = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kingest")


def _rows(count: int) -> pa.Table:
    ids = pa.array(range(count), pa.int64())
    text = pc.binary_join_element_wise("row ", pc.cast(ids, pa.string()), ", with a comma", "")
    return pa.table({"id": ids, "text": text, "value": pc.multiply(ids, 0.5)})


def _csv(rows: int) -> bytes:
    sink = io.BytesIO()
    pa_csv.write_csv(_rows(rows), sink)
    return sink.getvalue()


def _parquet_with_one_row_group(rows: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(_rows(rows), sink, row_group_size=rows)
    return sink.getvalue()


def _peak_rss_mb(argv: list[str]) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KINGEST_"))}
    process = psutil.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, process.memory_info().rss)
        time.sleep(0.01)
    return peak / 1e6, process.returncode


def _peaks(s3_server: S3Server, tables: dict[str, str], tmp_path: Path) -> dict[str, float]:
    """Peak RSS (MB) of a successful `kingest ingest` of each named source table."""
    peaks = {}
    for name, source_table in tables.items():
        argv = [KINGEST, "ingest", "--source-uri", s3_server.uri(), "--source-table",
                source_table, "--dest-uri", f"duckdb:///{tmp_path}/{name}.duckdb",
                "--dest-table", "raw.t"]  # fmt: skip
        peaks[name], code = _peak_rss_mb(argv)
        assert code == 0
    print(f"peak RSS (MB): {peaks}")
    return peaks


def test_peak_rss_stays_flat_from_a_small_to_a_large_csv(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    small, large = _csv(20_000), _csv(4_000_000)
    assert len(large) > 150e6
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="small.csv", Body=small)
    client.put_object(Bucket=bucket, Key="large.csv", Body=large)
    del large
    peaks = _peaks(
        s3_server, {name: f"{bucket}/{name}.csv" for name in ("small", "large")}, tmp_path
    )
    # The large file is ~100x the small one; memory may grow by a bounded amount, not with it.
    assert peaks["large"] < 500, peaks
    assert peaks["large"] - peaks["small"] < 250, peaks


def test_peak_rss_does_not_grow_with_the_parquet_files_read_at_once(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    # pyarrow decodes a whole row group before handing out a row of it; six files of one
    # large row group each must not all be decoded at once (--extract-parallelism is 5).
    data = _parquet_with_one_row_group(1_500_000)
    group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).total_byte_size
    assert group > 60e6, group
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="one/part-0.parquet", Body=data)
    for index in range(6):
        client.put_object(Bucket=bucket, Key=f"six/part-{index}.parquet", Body=data)
    del data
    peaks = _peaks(
        s3_server, {name: f"{bucket}/{name}/*.parquet" for name in ("one", "six")}, tmp_path
    )
    # Before the limit: +376 MB (5 row groups at once); with it +178 MB (2 at once).
    assert peaks["six"] - peaks["one"] < 250, peaks
