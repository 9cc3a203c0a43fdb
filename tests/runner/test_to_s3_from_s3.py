"""S3 -> S3: files matched by a glob in one bucket become a dataset in another, as Parquet."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq

from tests.platform.s3 import S3Server

KINGEST = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kingest")


def test_csv_files_in_s3_become_a_parquet_dataset_in_s3(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    client = s3_server.client()
    source_bucket = bucket + "-src"
    client.create_bucket(Bucket=source_bucket)
    for part in range(3):
        rows = "".join(f"{part * 100 + i},name {part * 100 + i}\n" for i in range(100))
        client.put_object(
            Bucket=source_bucket, Key=f"students/part-{part}.csv", Body=f"id,name\n{rows}"
        )
    client.put_object(Bucket=source_bucket, Key="students/notes.txt", Body=b"not matched")

    result_file = tmp_path / "result.json"
    proc = subprocess.run(
        [
            KINGEST,
            "ingest",
            "--source-uri",
            s3_server.uri(),
            "--source-table",
            f"{source_bucket}/students/*.csv",
            "--dest-uri",
            s3_server.uri(),
            "--dest-table",
            f"{bucket}/records",
        ],
        cwd=tmp_path,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "KINGEST_RESULT_FILE": str(result_file),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr
    result = json.loads(result_file.read_text())
    assert result["rows"] == 300
    (table,) = result["tables"]
    listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    data = [o["Key"] for o in listing if o["Key"].startswith(f"records/{table}/")]
    assert len(data) == 1 and data[0].endswith(".parquet")
    assert any(o["Key"].startswith("records/_dlt_loads/") for o in listing)
    body = client.get_object(Bucket=bucket, Key=data[0])["Body"].read()
    written = pq.read_table(io.BytesIO(body))
    assert written.num_rows == 300
    assert written.column_names[:2] == ["id", "name"]
    assert sorted(written.column("id").to_pylist()) == list(range(300))


def test_one_named_jsonl_file_becomes_a_csv_table_named_after_it(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    client = s3_server.client()
    lines = "".join(json.dumps({"id": i, "city": f"c{i}"}) + "\n" for i in range(50))
    client.put_object(Bucket=bucket, Key="in/students_details.jsonl", Body=lines)

    proc = subprocess.run(
        [
            KINGEST,
            "ingest",
            "--source-uri",
            s3_server.uri(),
            "--source-table",
            f"{bucket}/in/students_details.jsonl",
            "--dest-uri",
            s3_server.uri(layout="{table_name}.{ext}"),
            "--dest-table",
            f"{bucket}/out",
            "--loader-file-format",
            "csv",
        ],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr
    body = client.get_object(Bucket=bucket, Key="out/students_details.csv")["Body"].read()
    rows = body.decode().splitlines()
    assert len(rows) == 51
    assert rows[0].replace('"', "").split(",")[:2] == ["id", "city"]
