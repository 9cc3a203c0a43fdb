"""The one S3 client policy, for reading and writing alike: credentials, endpoint, region,
addressing style, retries and checksums are decided here and nowhere else.

- Credentials: the URI's keys if given, else botocore's default chain (environment
  variables, web identity / IRSA, instance role). boto3 on top of botocore would only add
  import time to every run.
- Endpoint: the URI's ``endpoint_url``, else the AWS SDKs' ``AWS_ENDPOINT_URL_S3`` /
  ``AWS_ENDPOINT_URL``. With any of them the store is S3-compatible (MinIO, R2, Spaces...).
- Addressing: path-style for S3-compatible stores (they all serve it) and for legacy bucket
  names (underscores, upper case), which are not valid host names; AWS otherwise picks.
- Retries: the SDKs' standard mode, the same number of attempts (first one included) for
  botocore and for pyarrow's native client.
- Checksums: botocore >= 1.36 adds CRC32 checksums (with aws-chunked bodies) to every upload,
  which several S3-compatible stores reject; there they are sent and checked only where
  required.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from datetime import datetime
from typing import Any

import botocore.loaders
import botocore.session
import botocore.utils
import pyarrow.fs as pafs
from botocore.config import Config
from botocore.exceptions import NoCredentialsError

from kingest.runner.uri import S3Uri

MAX_ATTEMPTS = 5
_POOL_CONNECTIONS = 16
_HOST_NAME_BUCKET = re.compile(r"[a-z0-9.-]+")


def response_timestamp(value: Any) -> datetime:
    """A timestamp in an S3 response, such as every listed object's LastModified.

    botocore's default parser (dateutil) took 9-17 s of a 23-45 s listing of 20,000 objects on
    the shared 2-core bench machine (bench/incremental_sync.py), about as long as the requests.
    S3 lists ISO 8601 (``2026-11-25T10:29:45.000Z``), which ``datetime`` parses natively; any
    other form (HTTP dates, epoch seconds, no time zone) goes to botocore's parser.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return botocore.utils.parse_timestamp(value)
    return parsed


def endpoint_of(uri: S3Uri) -> str | None:
    """The endpoint requests go to; None for AWS itself."""
    return (
        uri.endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )


class _PlainJsonFiles(botocore.loaders.JSONFileLoader):
    """botocore's data files (service models, endpoint rules) parsed into plain dicts.

    botocore's own loader builds every JSON object as an ``OrderedDict`` through a Python
    hook, which makes parsing them 3x slower: ~30 of the ~90 ms that making an S3 client
    takes, paid by every run before its first request. A dict keeps its order as well.
    """

    def load_file(self, file_path: str) -> Any:
        for suffix, opener in ((".json", open), (".json.gz", gzip.open)):
            if os.path.isfile(file_path + suffix):
                with opener(file_path + suffix, "rb") as data:
                    return json.loads(data.read().decode("utf-8"))
        return None


def session_for(uri: S3Uri) -> botocore.session.Session:
    """A botocore session with the URI's keys, or the default credential chain without."""
    session = botocore.session.Session()
    session.get_component("data_loader").file_loader = _PlainJsonFiles()
    key, secret, token = (
        value.get_secret_value() if value else None
        for value in (uri.access_key_id, uri.secret_access_key, uri.session_token)
    )
    if key or secret or token:
        session.set_credentials(key, secret, token)
    return session


def client_for(uri: S3Uri, bucket: str, session: botocore.session.Session | None = None) -> Any:
    """A botocore S3 client for ``bucket`` under the policy of this module."""
    session = session or session_for(uri)
    compatible = endpoint_of(uri) is not None
    path_style = compatible or not _HOST_NAME_BUCKET.fullmatch(bucket)
    # Listing parses every object's LastModified: see response_timestamp.
    parsers = session.get_component("response_parser_factory")
    parsers.set_parser_defaults(timestamp_parser=response_timestamp)
    checksums = "when_required" if compatible else "when_supported"
    return session.create_client(
        "s3",
        endpoint_url=uri.endpoint_url,
        region_name=uri.region or session.get_config_variable("region") or "us-east-1",
        config=Config(
            retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
            s3={"addressing_style": "path" if path_style else "auto"},
            request_checksum_calculation=checksums,
            response_checksum_validation=checksums,
            max_pool_connections=_POOL_CONNECTIONS,
        ),
    )


def filesystem_for(uri: S3Uri, session: botocore.session.Session, region: str) -> pafs.S3FileSystem:
    """pyarrow's native S3 client (multi-threaded C++, for reading objects' bytes) with the
    session's credentials, for a bucket in ``region``.

    Raises botocore's :class:`NoCredentialsError` if the session has no credentials.
    """
    credentials = session.get_credentials()
    if credentials is None:
        raise NoCredentialsError()
    frozen = credentials.get_frozen_credentials()
    kwargs: dict[str, Any] = {}
    if endpoint := endpoint_of(uri):
        scheme, _, host = endpoint.partition("://")
        kwargs = {"endpoint_override": host, "scheme": scheme}
    return pafs.S3FileSystem(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        session_token=frozen.token,
        region=region,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS),
        **kwargs,
    )
