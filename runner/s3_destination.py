"""S3 (and S3-compatible stores) as a destination: Arrow batches into files plus dlt bookkeeping.

``--dest-table my_bucket/records`` names the bucket and the *dataset root* (``records``); the
table's files go below it as the layout says (default ``users/<load_id>.<file_id>.parquet``),
next to dlt's ``_dlt_loads``, ``_dlt_pipeline_state``, ``_dlt_version`` folders and ``init``.

One load, in this order (each step only after the previous one completed):

1. validate everything that can be validated without data (layout, strategy, table name,
   bucket, an append that would overwrite an earlier file) - nothing is written if a check
   fails; an append also deletes files of earlier loads that never committed. The bucket is
   checked on a thread while the source opens, and every request waits for that check;
2. stream the batches into data files (multipart uploads, see :mod:`kingest.runner.s3_upload`),
   starting a new file every ``file_max_rows`` rows / ``file_max_bytes`` bytes when the layout
   has ``{file_id}``; a file becomes visible only once complete;
3. ``init``, the ``_dlt_version`` schema entry (if this schema version is new) and the
   ``_dlt_pipeline_state`` entry (the previous committed state carried over, with the
   incremental cursor this load moved to; a full refresh starts it afresh), together. A state
   entry counts only once its load has a ``_dlt_loads`` entry;
4. for ``replace``: delete the table's files that are not part of this load (and abort its
   multipart uploads abandoned by killed runs); ``--full-refresh`` also drops the earlier
   pipeline states;
5. the ``_dlt_loads`` entry - the commit marker.

If anything fails, no ``_dlt_loads`` entry exists for the load and a retry loads cleanly; its
state entry is deleted again (best effort). Before step 4 the files this load completed are
deleted again too, so the table reads as the previous load; from step 4 on they are kept,
since they are all the table has.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from kingest.runner import dlt_files, dlt_state
from kingest.runner.errors import (
    AccessDenied,
    BucketNotFound,
    DestinationError,
    InvalidUri,
    KingestError,
    UsageError,
)
from kingest.runner.interfaces import Destination, LoadOptions, LoadSummary, SourceStream
from kingest.runner.layout import (
    Layout,
    LayoutError,
    LoadStamp,
    check_table_name,
    check_table_prefix,
    load_id_pattern,
)
from kingest.runner.prefetch import ordered_parallel
from kingest.runner.s3_files import (
    CONTENT_TYPES,
    FILE_FORMATS,
    ROW_GROUP_ROWS,
    FileFormat,
    FileWriter,
    intervals_as_text,
    open_file_writer,
    record_batches,
)
from kingest.runner.s3_upload import ObjectSink
from kingest.runner.uri import ParsedUri, S3Uri

if TYPE_CHECKING:
    from kingest.runner.cursor import CursorTracker

STRATEGIES = ("replace", "append")
# Without --loader-file-size, a new file starts once a file reaches this size.
DEFAULT_FILE_MAX_BYTES = 512 * 1024 * 1024
_DELETE_BATCH = 1000


@dataclass(frozen=True)
class DatasetLocation:
    """``--dest-table`` for S3: ``bucket`` or ``bucket/path/to/dataset``."""

    bucket: str
    root: str

    @classmethod
    def parse(cls, dest_table: str) -> DatasetLocation:
        """Split ``bucket/path``; raises :class:`UsageError` otherwise."""
        value = dest_table.removeprefix("s3://").strip("/")
        bucket, _, root = value.partition("/")
        if not bucket or "//" in root:
            raise UsageError(
                f"--dest-table {dest_table!r}: expected '<bucket>/<path>', e.g. 'bucket/records'"
            )
        return cls(bucket=bucket, root=root)

    def key(self, relative: str) -> str:
        """The full object key of a key relative to the dataset root."""
        return f"{self.root}/{relative}" if self.root else relative


@dataclass(frozen=True)
class S3WriteOptions:
    """How to write one load."""

    strategy: str = "replace"
    full_refresh: bool = False
    file_format: FileFormat = "parquet"
    file_max_rows: int | None = None
    file_max_bytes: int = DEFAULT_FILE_MAX_BYTES
    row_group_rows: int = ROW_GROUP_ROWS


@dataclass
class S3LoadResult:
    """What one load wrote: data files (full keys), rows, data bytes and every object key."""

    load_id: str
    table_name: str
    rows: int = 0
    bytes: int = 0
    files: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    deleted: int = 0
    orphans_removed: int = 0


@dataclass(frozen=True)
class _Dataset:
    """The dataset's bookkeeping before a load: whether ``init`` exists, the newest stored
    schema of this pipeline, and the version hashes already stored."""

    has_init: bool
    newest_schema: dict[str, Any] | None
    version_hashes: set[str]
    state: dict[str, Any] | None = None
    """This pipeline's newest committed state (the one with a ``_dlt_loads`` entry)."""


_FILE_SUFFIXES = re.compile(r"(\.(csv|tsv|jsonl|ndjson|json|parquet|gz|gzip|zst|zstd))+$", re.I)


def key_safe_table_name(name: str) -> str:
    """A source's table name as one clean key segment.

    DuckDB tables keep their name (``users``). A name taken from a file glob loses its file
    extensions and wildcards (``students_details.csv`` -> ``students_details``,
    ``part-*.csv.gz`` -> ``part``, ``*.csv`` -> ``data``); other characters that do not
    belong in a key become ``_`` (``my table`` -> ``my_table``).
    """
    base = re.sub(r"[*?\[\]{}]", "", _FILE_SUFFIXES.sub("", name))
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("._-") or "data"


# -- the destination -------------------------------------------------------------------------


@dataclass(frozen=True)
class S3LoadSummary(LoadSummary):
    """:class:`LoadSummary` plus what was written: data files, their bytes, every object key."""

    files_written: int = 0
    bytes_written: int = 0
    objects: tuple[str, ...] = ()

    def written(self) -> dict[str, int]:
        return {
            "files_written": self.files_written,
            "bytes_written": self.bytes_written,
            "objects_written": len(self.objects),
        }


class S3Destination(Destination):
    """Loads one Arrow stream as one table of a dataset on S3."""

    @classmethod
    def from_uri(cls, uri: ParsedUri, table: str, options: LoadOptions) -> S3Destination:
        """Validate the ``s3://`` URI, ``--dest-table`` and the flags; no I/O yet."""
        parsed = S3Uri.from_parsed(uri)
        # Checked against FILE_FORMATS in __init__, with a message naming the flag.
        file_format = cast(FileFormat, options.loader_file_format or "parquet")
        write_options = S3WriteOptions(
            strategy=str(options.strategy),
            full_refresh=options.full_refresh,
            file_format=file_format,
            file_max_rows=options.loader_file_size,
        )
        return cls(parsed, table, write_options)

    def load(self, stream: SourceStream, load_id: str) -> S3LoadSummary:
        """Write the stream as table ``stream.name``, committed by its ``_dlt_loads`` entry."""
        result = self.write(stream.reader, key_safe_table_name(stream.name), load_id, stream.cursor)
        return S3LoadSummary(
            rows=result.rows,
            destination_table=self.dest_table,
            tables={result.table_name: result.rows},
            files_written=len(result.files),
            bytes_written=result.bytes,
            objects=tuple(result.objects),
        )

    def existing_columns(self, stream_name: str) -> dict[str, str] | None:
        """The table's columns (dlt types) in the dataset's newest stored schema, if any."""
        newest = self._read_dataset().newest_schema or {}
        table = newest.get("tables", {}).get(key_safe_table_name(stream_name), {})
        columns = table.get("columns") or {}
        return {name: str(c.get("data_type", "text")) for name, c in columns.items()} or None

    def __init__(
        self,
        uri: S3Uri,
        dest_table: str,
        options: S3WriteOptions,
    ) -> None:
        self.uri = uri
        self.dest_table = dest_table
        self.location = DatasetLocation.parse(dest_table)
        self.options = options
        try:
            self.layout = Layout.parse(uri.layout)
        except LayoutError as exc:
            raise InvalidUri(f"destination URI parameter 'layout': {exc}") from None
        if options.strategy not in STRATEGIES:
            raise UsageError(
                f"--incremental-strategy {options.strategy!r} is not supported for an S3 "
                "destination: files cannot be merged or deleted row by row; use 'replace' "
                "(the default) or 'append'"
            )
        if options.file_format not in FILE_FORMATS:
            raise UsageError(
                f"--loader-file-format {options.file_format!r}: an S3 destination writes "
                f"{', '.join(FILE_FORMATS)}"
            )
        if options.file_max_rows is not None and options.file_max_rows < 1:
            raise UsageError(f"--loader-file-size {options.file_max_rows}: must be 1 or more rows")
        if options.file_max_rows is not None and not self.layout.splits_files:
            raise UsageError(
                f"--loader-file-size splits a table into several files, but layout "
                f"{self.layout.template!r} has no {{file_id}} to tell them apart; add "
                "{file_id} to the layout or drop --loader-file-size"
            )
        self._connection: Future[Any] | None = None
        self._connection_lock = threading.Lock()
        self.pipeline_name = dlt_files.pipeline_name_for(dest_table)
        self.schema_name = dlt_files.schema_name_for(dest_table)

    @property
    def client(self) -> Any:
        """The S3 client, handed out only once the bucket is known to exist and answer.

        Made on first use (checking a spec, which the operator does for every new generation
        of every Ingestion, must not pay for one) or ahead by :meth:`connect_ahead`. Every
        request goes through here, so nothing is written before the bucket check passed, and
        a missing bucket or a refused key fails the first request with what is wrong.
        """
        return self._connect(ahead=False).result()

    def connect_ahead(self) -> None:
        """Import botocore, make the client and check the bucket on a thread.

        That is ~190 ms of Python (botocore's modules and service models) which the source's
        first reads and the first file's encoding (DuckDB, Arrow: no GIL) overlap; the first
        request waits for it.
        """
        self._connect(ahead=True)

    def _connect(self, ahead: bool) -> Future[Any]:
        with self._connection_lock:
            if self._connection is None:
                if ahead:
                    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-connect")
                    self._connection = pool.submit(self._open_bucket)
                    pool.shutdown(wait=False)  # its one thread ends with the check
                else:
                    self._connection = Future()
                    try:
                        self._connection.set_result(self._open_bucket())
                    except BaseException as exc:
                        self._connection.set_exception(exc)
            return self._connection

    def _open_bucket(self) -> Any:
        # botocore is imported here, not with this module: see connect_ahead.
        from kingest.runner.s3_client import client_for

        with self._s3_errors(f"opening bucket {self.location.bucket!r}"):
            client = client_for(self.uri, self.location.bucket)
            client.head_bucket(Bucket=self.location.bucket)
        return client

    # -- S3 primitives with errors a user can act on --

    @contextlib.contextmanager
    def _s3_errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except KingestError:
            raise
        except NoCredentialsError:
            raise AccessDenied(
                f"{what}: no AWS credentials found (give access_key_id and secret_access_key "
                "in the URI or KINGEST_DESTINATION_* variables, or configure the default chain)"
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchBucket",) or (code == "404" and "bucket" in what):
                raise BucketNotFound(f"bucket {self.location.bucket!r} does not exist") from None
            if (
                code
                in (
                    "AccessDenied",
                    "InvalidAccessKeyId",
                    "SignatureDoesNotMatch",
                    "ExpiredToken",
                    "InvalidToken",
                    "403",
                )
                or status == 403
            ):
                raise AccessDenied(
                    f"{what}: access denied ({code}); check the credentials and their "
                    f"permissions on bucket {self.location.bucket!r}"
                ) from None
            raise DestinationError(
                f"{what}: S3 answered {code or status}: {error.get('Message', '')}".rstrip(": "),
            ) from None
        except BotoCoreError as exc:
            raise DestinationError(f"{what}: {exc}") from None

    def _list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._s3_errors(f"listing s3://{self.location.bucket}/{prefix}"):
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]

    def _exists(self, key: str) -> bool:
        with self._s3_errors(f"checking s3://{self.location.bucket}/{key}"):
            try:
                self.client.head_object(Bucket=self.location.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return True

    def _put(self, key: str, body: bytes, content_type: str = "application/json") -> None:
        with self._s3_errors(f"writing s3://{self.location.bucket}/{key}"):
            self.client.put_object(
                Bucket=self.location.bucket, Key=key, Body=body, ContentType=content_type
            )

    def _get_json(self, key: str) -> dict[str, Any] | None:
        with self._s3_errors(f"reading s3://{self.location.bucket}/{key}"):
            body = self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read()
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            chunk = keys[start : start + _DELETE_BATCH]
            with self._s3_errors(f"deleting objects under s3://{self.location.bucket}"):
                response = self.client.delete_objects(
                    Bucket=self.location.bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise (AccessDenied if first.get("Code") == "AccessDenied" else DestinationError)(
                    f"deleting s3://{self.location.bucket}/{first.get('Key')} failed: "
                    f"{first.get('Code')} {first.get('Message', '')}".rstrip()
                )

    # -- the load --

    def stored_state(self) -> dict[str, Any] | None:
        """The newest committed pipeline state of this dataset's pipeline (None if none)."""
        return self._committed_state()

    def write(
        self,
        reader: pa.RecordBatchReader,
        table_name: str,
        load_id: str | None = None,
        cursor: CursorTracker | None = None,
    ) -> S3LoadResult:
        """Write ``reader`` as table ``table_name``; see the module docstring for the order.

        Raises a :class:`KingestError` subclass naming what failed.
        """
        try:
            check_table_name(table_name)
            table_prefix = self.layout.table_prefix(
                table_name=table_name, schema_name=self.schema_name
            )
            check_table_prefix(table_prefix, table_name=table_name)
        except LayoutError as exc:
            raise InvalidUri(f"destination URI parameter 'layout': {exc}") from None
        stamp = LoadStamp.from_load_id(load_id) if load_id else LoadStamp.now()
        result = S3LoadResult(load_id=stamp.load_id, table_name=table_name)
        if not self.layout.unique_per_load and self.options.strategy == "append":
            self._refuse_overwrite(table_name, stamp)
        if self.options.strategy == "append":
            # Replace removes them anyway, once this load is complete.
            result.orphans_removed = self._remove_uncommitted(table_name, table_prefix, stamp)

        if self.options.file_format != "jsonl":
            reader = intervals_as_text(reader)
        written: list[str] = []
        committed = False
        # What the bookkeeping reads of the dataset does not depend on the data: it is read
        # while the data is written (each request is a round trip the load would wait for).
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="s3-dataset") as side:
            dataset = side.submit(self._read_dataset)
            try:
                self._write_data(reader, table_name, stamp, result, written)
                self._write_bookkeeping(
                    reader.schema, table_name, table_prefix, stamp, result, written,
                    dataset.result(), side, cursor,
                )  # fmt: skip
                committed = True
            finally:
                if not committed:
                    self._discard(written)
        return result

    def _read_dataset(self) -> _Dataset:
        """The dataset's bookkeeping as this load finds it (one listing of the schema
        versions serves both the newest schema and the known version hashes)."""
        loc = self.location
        has_init = self._exists(loc.key(dlt_files.INIT_KEY))
        versions = list(self._list(loc.key(dlt_files.VERSION_FOLDER + "/")))
        ours = loc.key(f"{dlt_files.VERSION_FOLDER}/{self.schema_name}__")
        newest = self._newest_stored_schema([k for k in versions if k.startswith(ours)])
        hashes = {dlt_files.version_hash_in_key(k) for k in versions}
        state = None if self.options.full_refresh else self._committed_state()
        return _Dataset(has_init, newest, hashes, state)

    def _committed_state(self) -> dict[str, Any] | None:
        """The state of this pipeline's newest load that has its ``_dlt_loads`` entry (dlt
        itself takes the newest state object; a killed run may leave one without its entry)."""
        loc = self.location
        committed = {
            dlt_files.state_load_id(k)
            for k in self._list(loc.key(f"{dlt_files.LOADS_FOLDER}/{self.schema_name}__"))
        }
        states = [
            k
            for k in self._list(loc.key(f"{dlt_files.STATE_FOLDER}/{self.pipeline_name}__"))
            if dlt_files.state_load_id(k) in committed
        ]
        if not states:
            return None

        def load_time(key: str) -> float:
            with contextlib.suppress(TypeError, ValueError):
                return float(dlt_files.state_load_id(key))  # type: ignore[arg-type]
            return 0.0

        doc = self._get_json(max(states, key=load_time))
        text = doc.get("state") if doc else None
        return dlt_state.decompress(text) if isinstance(text, str) else None

    def _remove_uncommitted(self, table_name: str, table_prefix: str, stamp: LoadStamp) -> int:
        """Delete files of earlier loads of this table that have no ``_dlt_loads`` entry.

        Such files come from a run that died after some of its files were complete; an
        append must not build on them. Needs ``{load_id}`` in the layout to tell loads apart.
        """
        pattern = load_id_pattern(self.layout, table_name=table_name, schema_name=self.schema_name)
        if pattern is None:
            return 0
        loc = self.location
        committed = {
            key.rsplit(dlt_files.SEPARATOR, 1)[-1].removesuffix(".jsonl")
            for key in self._list(loc.key(dlt_files.LOADS_FOLDER + "/"))
        }
        root = loc.key("")
        orphans = []
        for key in self._list(loc.key(table_prefix)):
            match = pattern.fullmatch(key[len(root) :])
            if not match or match["load_id"] in committed:
                continue
            with contextlib.suppress(ValueError):
                if float(match["load_id"]) < float(stamp.load_id):
                    orphans.append(key)
        self._delete(orphans)
        return len(orphans)

    def _refuse_overwrite(self, table_name: str, stamp: LoadStamp) -> None:
        key = self.location.key(
            self.layout.render(
                table_name=table_name,
                schema_name=self.schema_name,
                stamp=stamp,
                file_id="",
                ext=self.options.file_format,
            )
        )
        if self._exists(key):
            raise UsageError(
                f"append would overwrite s3://{self.location.bucket}/{key} from an earlier load: "
                f"layout {self.layout.template!r} names the file the same in every load; add "
                "{load_id} or {file_id} to the layout, or use --incremental-strategy replace"
            )

    def _new_key(self, table_name: str, stamp: LoadStamp, taken: set[str]) -> str:
        while True:
            # dlt's file ids: 5 random bytes as 10 hex characters.
            relative = self.layout.render(
                table_name=table_name,
                schema_name=self.schema_name,
                stamp=stamp,
                file_id=secrets.token_hex(5),
                ext=self.options.file_format,
            )
            key = self.location.key(relative)
            if key not in taken:
                return key

    def _write_data(
        self,
        reader: pa.RecordBatchReader,
        table_name: str,
        stamp: LoadStamp,
        result: S3LoadResult,
        written: list[str],
    ) -> None:
        """Stream the batches into files; each file is committed only once complete."""
        schema = reader.schema
        content_type = CONTENT_TYPES[self.options.file_format]
        max_rows = self.options.file_max_rows if self.layout.splits_files else None
        max_bytes = self.options.file_max_bytes if self.layout.splits_files else None
        taken: set[str] = set()
        where = f"writing table {table_name!r} to s3://{self.location.bucket}/{self.location.root}"

        with (
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="s3-part") as pool,
            self._s3_errors(where),
        ):
            sink: ObjectSink | None = None
            writer: FileWriter | None = None
            file_rows = 0

            def start_file() -> tuple[ObjectSink, FileWriter]:
                key = self._new_key(table_name, stamp, taken)
                taken.add(key)
                new_sink = ObjectSink(
                    lambda: self.client, self.location.bucket, key, pool, content_type=content_type
                )
                return new_sink, open_file_writer(
                    self.options.file_format, new_sink, schema, self.options.row_group_rows
                )

            def finish_file(sink: ObjectSink, writer: FileWriter) -> None:
                writer.finish()
                result.bytes += sink.commit()
                written.append(sink.key)
                result.files.append(sink.key)

            # The source is read on a thread of its own, one batch ahead: DuckDB (or a
            # parser) produces the next batch while this thread encodes the last one.
            batches = ordered_parallel([reader], record_batches, parallelism=1, depth=1)
            try:
                for batch in batches:
                    offset = 0
                    while offset < batch.num_rows:
                        if sink is None or writer is None:
                            sink, writer = start_file()
                            file_rows = 0
                        take = batch.num_rows - offset
                        if max_rows is not None:
                            take = min(take, max_rows - file_rows)
                        writer.write(batch.slice(offset, take))
                        offset += take
                        file_rows += take
                        result.rows += take
                        full_by_rows = max_rows is not None and file_rows >= max_rows
                        full_by_bytes = max_bytes is not None and sink.bytes_written >= max_bytes
                        if full_by_rows or full_by_bytes:
                            finish_file(sink, writer)
                            sink, writer = None, None
                if sink is None and not result.files:
                    # An empty table is still a table: one file with the schema and no rows.
                    sink, writer = start_file()
                if sink is not None and writer is not None:
                    finish_file(sink, writer)
                    sink, writer = None, None
            except BaseException:
                if sink is not None:
                    sink.abort()
                raise
            finally:
                batches.close()

    def _write_bookkeeping(
        self,
        schema: pa.Schema,
        table_name: str,
        table_prefix: str,
        stamp: LoadStamp,
        result: S3LoadResult,
        written: list[str],
        dataset: _Dataset,
        side: ThreadPoolExecutor,
        cursor: CursorTracker | None = None,
    ) -> None:
        """Steps 3-5 of the module docstring; ``written`` keeps only the state entry once old
        files are deleted.

        The requests of one step do not depend on each other and go out together: a load
        waits for three round trips after its data, not six.
        """
        loc = self.location
        # The table's entry is rebuilt from this load's columns; other tables of the
        # dataset keep theirs (a full refresh of one table leaves the others alone).
        disposition = self.options.strategy
        stored = dlt_files.stored_schema(
            self.schema_name,
            [dlt_files.table_schema(table_name, schema, disposition, self.options.file_format)],
            dataset.newest_schema,
        )
        state = dlt_files.pipeline_state_object(
            state=dlt_state.next_state(
                dataset.state,
                pipeline_name=self.pipeline_name,
                schema_name=self.schema_name,
                dataset_name=loc.root,
                destination_type="dlt.destinations.filesystem",
                cursor=cursor.update() if cursor is not None else None,
            ),
            schema=stored,
            stamp=stamp,
        )
        puts: list[tuple[str, bytes]] = []
        if not dataset.has_init:
            puts.append((loc.key(dlt_files.INIT_KEY), dlt_files.init_object().body))
        if dlt_files.path_safe_hash(stored["version_hash"]) not in dataset.version_hashes:
            version = dlt_files.version_object(stored, stamp)
            puts.append((loc.key(version.key), version.body))
        # Uncommitted until the marker exists: removed again if anything fails before it
        # (dlt itself would read it, as it reads the newest state object whether or not its
        # load completed).
        state_key = loc.key(state.key)
        written.append(state_key)
        puts.append((state_key, state.body))

        # Step 3 and the state entry; for replace, the listing of what step 4 deletes.
        replace = self.options.strategy == "replace" or self.options.full_refresh
        listing = side.submit(lambda: list(self._list(loc.key(table_prefix)))) if replace else None
        for done in [side.submit(self._put, key, body) for key, body in puts]:
            done.result()
        result.objects.extend(key for key, _ in puts)

        if listing is not None:
            keep = set(result.files)
            stale = [k for k in listing.result() if k not in keep]
            # Point of no return: once previous files go, this load's files are the table,
            # committed or not; a failure from here on keeps them (a retry replaces them).
            written[:] = [state_key]
            # Best effort and independent of the deletes: alongside them.
            side.submit(self._abort_abandoned_uploads, loc.key(table_prefix), stamp.started_at)
            self._delete(stale)
            result.deleted = len(stale)
        if self.options.full_refresh:
            state_prefix = loc.key(f"{dlt_files.STATE_FOLDER}/{self.pipeline_name}__")
            self._delete([k for k in self._list(state_prefix) if k != state_key])

        marker = dlt_files.loads_object(stored, stamp, inserted_at=datetime.now(UTC))
        self._put(loc.key(marker.key), marker.body)
        result.objects = [*result.files, *result.objects, loc.key(marker.key)]

    def _abort_abandoned_uploads(self, prefix: str, before: datetime) -> None:
        """Abort multipart uploads of this table left by runs that died before this one.

        They are invisible either way, but S3 bills their parts until a lifecycle rule
        reaps them. Best effort: a store without the listing call simply keeps them.
        """
        with contextlib.suppress(Exception):
            response = self.client.list_multipart_uploads(
                Bucket=self.location.bucket, Prefix=prefix
            )
            for upload in response.get("Uploads", []):
                if upload["Initiated"] < before:
                    self.client.abort_multipart_upload(
                        Bucket=self.location.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )

    def _newest_stored_schema(self, keys: list[str]) -> dict[str, Any] | None:
        """The schema in the newest of ``keys`` (this schema's version entries), if readable."""
        if not keys:
            return None

        def schema_id(key: str) -> float:
            parts = key.rsplit("/", 1)[-1].split("__")
            try:
                return float(parts[1])
            except (IndexError, ValueError):
                return 0.0

        doc = self._get_json(max(keys, key=schema_id))
        if not doc or not isinstance(doc.get("schema"), str):
            return None
        try:
            schema = json.loads(doc["schema"])
        except ValueError:
            return None
        return schema if isinstance(schema, dict) and "version_hash" in schema else None

    def _discard(self, keys: list[str]) -> None:
        """Remove this load's completed files after a failure (best effort, never raises)."""
        with contextlib.suppress(Exception):
            self._delete(keys)
