"""Which objects of a bucket a run reads: listing the glob's prefix, matching keys, telling
formats and Hive partitions apart, leaving out file versions already loaded.

Listing parses every object's key, size, ETag and modification time (the ETag and size
identify a file version for incremental syncs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import unquote

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from kingest.runner.errors import (
    AccessDenied,
    BucketNotFound,
    KingestError,
    NoFilesMatched,
    SourceUnavailable,
    UsageError,
)
from kingest.runner.formats import FileKind, detect_kind
from kingest.runner.glob import ObjectGlob
from kingest.runner.interfaces import LoadedFiles, SourceFile
from kingest.runner.uri import S3Uri

_DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "403",
}
_HIVE_SEGMENT = re.compile(r"^([^=/]+)=([^/]*)$")
_INT = re.compile(r"^-?\d{1,18}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Listed(NamedTuple):
    """One object the listing matched, with what identifies its version."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None


@dataclass(frozen=True, slots=True)
class S3Object:
    """One matched object and how to read it."""

    key: str
    size: int
    kind: FileKind
    partitions: tuple[tuple[str, str], ...] = ()
    etag: str = ""
    last_modified: datetime | None = None

    def url(self, bucket: str) -> str:
        """``s3://bucket/key``, for messages and the source-file column."""
        return f"s3://{bucket}/{self.key}"

    def version(self, bucket: str) -> SourceFile:
        """This object as a file version, for the destination's loaded-files record."""
        return SourceFile(self.url(bucket), self.etag, self.size, self.last_modified)


def client_error(exc: ClientError, what: str, bucket: str) -> KingestError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("NoSuchBucket", "404") and "bucket" in what:
        return BucketNotFound(f"bucket {bucket!r} does not exist ({what})")
    if code in _DENIED_CODES or status == 403:
        return AccessDenied(
            f"access denied to bucket {bucket!r} ({what}: {code}); check the source URI's "
            "access_key_id / secret_access_key / session_token or the role's permissions"
        )
    return SourceUnavailable(f"S3 {what} on bucket {bucket!r} failed: {code or status}")


def parse_instant(value: str, flag: str) -> datetime:
    """An ``--interval-start/--interval-end`` value as an aware datetime (naive means UTC)."""
    try:
        instant = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(
            f"{flag} {value!r}: not an ISO 8601 date or timestamp "
            "(e.g. 2026-11-25 or 2026-11-25T10:00:00Z)"
        ) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def partition_type(values: list[str]) -> pa.DataType:
    present = [v for v in values if v not in ("", "__HIVE_DEFAULT_PARTITION__")]
    if present and all(_INT.match(v) for v in present):
        return pa.int64()
    if present and all(_DATE.match(v) for v in present):
        return pa.date32()
    return pa.string()


def hive_partitions(key: str) -> tuple[tuple[str, str], ...]:
    """``a/dt=2026-11-25/country=DE/f.parquet`` -> ``(("dt", "2026-11-25"), ("country", "DE"))``."""
    folders = key.split("/")[:-1]
    return tuple(
        (unquote(m.group(1)), unquote(m.group(2)))
        for m in (_HIVE_SEGMENT.match(folder) for folder in folders)
        if m
    )


@dataclass(frozen=True)
class ObjectSelection:
    """The objects ``--source-table <bucket>/<glob>`` names, and which of them a run reads:
    not yet loaded, and (``by_modified_at``, ingestr's opt-in mode) modified in
    ``[modified_from, modified_until]`` (both included, as ingestr's intervals)."""

    uri: S3Uri
    glob: ObjectGlob
    by_modified_at: bool = False
    modified_from: datetime | None = None
    modified_until: datetime | None = None

    def list(self, client: Any) -> tuple[list[Listed], str, int]:
        """Matched objects, the bucket's region and how many objects were listed."""
        bucket, prefix = self.glob.bucket, self.glob.prefix
        matched: list[Listed] = []
        listed = 0
        region = self.uri.region or ""
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                headers = page.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                region = region or headers.get("x-amz-bucket-region", "")
                for obj in page.get("Contents", []):
                    listed += 1
                    key = obj["Key"]
                    if key.endswith("/") or not self.glob.matches(key):
                        continue
                    etag = str(obj.get("ETag", "")).strip('"')
                    matched.append(Listed(key, int(obj["Size"]), etag, obj.get("LastModified")))
        except NoCredentialsError:
            raise AccessDenied(
                "no AWS credentials: set access_key_id and secret_access_key in the source URI, "
                "or configure the default chain (AWS_* variables, web identity, instance role)"
            ) from None
        except ClientError as exc:
            raise client_error(exc, "listing the bucket", bucket) from None
        except BotoCoreError as exc:
            where = self.uri.endpoint_url or "AWS S3"
            raise SourceUnavailable(f"cannot list bucket {bucket!r} at {where}: {exc}") from None
        return matched, region or "us-east-1", listed

    def objects(self, matched: list[Listed], listed: int) -> list[S3Object]:
        bucket = self.glob.bucket
        if not matched:
            raise NoFilesMatched(
                f"no object matches {self.glob.describe()}: listed prefix "
                f"'s3://{bucket}/{self.glob.prefix}' ({listed} object(s), none matching)"
            )
        objects: list[S3Object] = []
        for key, size, etag, last_modified in matched:
            kind = detect_kind(key, self.glob.hints)
            if kind is None:
                raise UsageError(
                    f"s3://{bucket}/{key}: unknown file format; supported: .csv, .jsonl, "
                    ".ndjson, .parquet (optionally .gz or .zst), or add a hint to "
                    "--source-table such as '#csv', '#jsonl' or '#parquet'"
                )
            partitions = hive_partitions(key) if self.uri.hive_partitioning else ()
            objects.append(S3Object(key, size, kind, partitions, etag, last_modified))
        families: dict[str, str] = {}
        for obj in objects:
            families.setdefault(obj.kind.family, obj.url(bucket))
        if len(families) > 1:
            listing = "; ".join(f"{fmt} (e.g. {url})" for fmt, url in sorted(families.items()))
            raise UsageError(
                f"{self.glob.describe()} matches files of several formats: {listing}. "
                "Narrow the glob (e.g. '*.csv') so one run reads one format"
            )
        return objects

    def to_read(self, objects: list[S3Object], loaded: LoadedFiles | None) -> list[S3Object]:
        """The objects this run reads: not yet loaded, and modified in the interval if asked."""
        bucket = self.glob.bucket
        kept = []
        for obj in objects:
            if self.by_modified_at and not self._modified_in_interval(obj):
                continue
            if loaded:
                version = obj.version(bucket)
                known = loaded.get(version.url)
                if known is not None and known.same_version(version):
                    continue
            kept.append(obj)
        return kept

    def _modified_in_interval(self, obj: S3Object) -> bool:
        if obj.last_modified is None:
            return self.modified_from is None and self.modified_until is None
        if self.modified_from is not None and obj.last_modified < self.modified_from:
            return False
        return self.modified_until is None or obj.last_modified <= self.modified_until
