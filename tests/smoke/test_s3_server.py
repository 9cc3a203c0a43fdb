"""The platform's S3 server speaks real S3 over HTTP to both clients the runner uses."""

import time

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from tests.platform.s3 import S3Server


def _arrow_fs(s3: S3Server) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(
        access_key=s3.access_key_id,
        secret_key=s3.secret_access_key,
        region=s3.region,
        endpoint_override=s3.endpoint_url,
        scheme="http",
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )


def test_boto3_round_trips_an_object(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="a/b.csv", Body=b"id\n1\n")
    assert client.get_object(Bucket=bucket, Key="a/b.csv")["Body"].read() == b"id\n1\n"


def test_pyarrow_writes_what_boto3_reads(s3_server: S3Server, bucket: str) -> None:
    table = pa.table({"id": [1, 2, 3], "name": ["a", "b", None]})
    pq.write_table(table, f"{bucket}/t.parquet", filesystem=_arrow_fs(s3_server))
    body = s3_server.client().get_object(Bucket=bucket, Key="t.parquet")["Body"].read()
    assert pq.read_table(pa.BufferReader(body)).equals(table)


def test_a_failure_fault_fails_only_the_matching_request(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="keep.txt", Body=b"x")
    s3_server.faults.add("fail", method="PUT", path_regex=r"/broken\.txt$", status=503)
    with pytest.raises(ClientError) as raised:
        client.put_object(Bucket=bucket, Key="broken.txt", Body=b"x")
    assert raised.value.response["Error"]["Code"] == "SlowDown"
    client.put_object(Bucket=bucket, Key="broken.txt", Body=b"x")  # fired once only
    assert [rule["hits"] for rule in s3_server.faults.rules()] == [1]


def test_a_refused_request_gets_no_response(s3_server: S3Server, bucket: str) -> None:
    s3_server.faults.add("refuse", method="GET", path_regex=rf"/{bucket}/gone$")
    with pytest.raises(ConnectionClosedError):
        s3_server.client().get_object(Bucket=bucket, Key="gone")


def test_a_delay_fault_delays(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="slow", Body=b"x")
    s3_server.faults.add("delay", method="GET", path_regex=r"/slow$", delay_s=0.5)
    started = time.monotonic()
    client.get_object(Bucket=bucket, Key="slow")
    assert time.monotonic() - started >= 0.5


def test_faults_are_cleared_between_tests(s3_server: S3Server) -> None:
    assert s3_server.faults.rules() == []


def test_a_failed_head_leaves_the_connection_usable(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="there", Body=b"x")
    s3_server.faults.add("fail", method="HEAD", path_regex=r"/there$", status=403)
    with pytest.raises(ClientError):
        client.head_object(Bucket=bucket, Key="there")
    started = time.monotonic()
    assert client.get_object(Bucket=bucket, Key="there")["Body"].read() == b"x"
    assert time.monotonic() - started < 5
