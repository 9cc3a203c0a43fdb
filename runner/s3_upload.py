"""An S3 object written as a stream: multipart upload that is either completed or aborted.

pyarrow's own S3 output stream completes the multipart upload when it is closed *or garbage
collected*, so a writer that fails half-way would publish a truncated file. This sink keeps
that decision explicit: :meth:`ObjectSink.commit` makes the object visible,
:meth:`ObjectSink.abort` discards every uploaded part. Until then nothing is visible under
the key, which is what lets a failed or killed load leave no half-written file.

Parts are uploaded by a small thread pool while the caller keeps encoding; at most
``max_pending`` parts are in flight, so memory stays at about ``(max_pending + 1) * part_size``.
What the writer hands over is copied once, into the part it fills; a full part goes to the
upload as it is.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000


class ObjectSink:
    """A write-only, file-like object streaming into one S3 object (pyarrow writers accept it).

    ``client`` returns the S3 client and is first called by the first request, so a writer
    encodes its first part while the client is still being made.
    """

    def __init__(
        self,
        client: Callable[[], Any],
        bucket: str,
        key: str,
        pool: ThreadPoolExecutor,
        *,
        part_size: int = MIN_PART_SIZE,
        max_pending: int = 4,
        content_type: str = "application/octet-stream",
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.key = key
        self._pool = pool
        self._part_size = part_size
        self._content_type = content_type
        self._part = bytearray(part_size)
        self._filled = 0
        self._position = 0
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._slots = threading.BoundedSemaphore(max_pending)
        self._finished = False
        self._failed: Future[dict[str, Any]] | None = None

    # -- file protocol used by pyarrow's writers ------------------------------------------

    @property
    def closed(self) -> bool:
        return self._finished

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        """Parts are sent when full; flushing early would make undersized parts."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` into the current part; full parts are handed to the upload pool."""
        if self._finished:
            raise ValueError(f"write to finished object s3://{self.bucket}/{self.key}")
        with memoryview(data) as whole, whole.cast("B") as view:
            size = view.nbytes
            offset = 0
            while offset < size:
                take = min(len(self._part) - self._filled, size - offset)
                self._part[self._filled : self._filled + take] = view[offset : offset + take]
                self._filled += take
                offset += take
                if self._filled == len(self._part):
                    self._send_part(self._part)  # the upload owns it from here
                    self._part, self._filled = bytearray(self._part_size), 0
        self._position += size
        return size

    def _rest(self) -> bytes:
        """What the current part holds (the object's last, smaller part)."""
        with memoryview(self._part) as view:
            return bytes(view[: self._filled])

    def close(self) -> None:
        """pyarrow writers close their sink when done; the upload is decided by commit/abort."""

    # -- completion ---------------------------------------------------------------------------

    @property
    def bytes_written(self) -> int:
        return self._position

    def _send_part(self, chunk: bytes | bytearray) -> None:
        if self._upload_id is None:
            created = self._client().create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self._content_type
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise ValueError(f"s3://{self.bucket}/{self.key} exceeds {MAX_PARTS} parts")
        # Bigger parts as the object grows keep very large files under S3's part limit.
        if number % 1000 == 0:
            self._part_size *= 2
        self._slots.acquire()
        try:
            future = self._pool.submit(self._upload_part, number, chunk)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._part_done)
        self._parts.append(future)
        # Surface a failed part now rather than after encoding the rest of the file.
        if self._failed is not None:
            self._failed.result()

    def _part_done(self, future: Future[dict[str, Any]]) -> None:
        if not future.cancelled() and future.exception() is not None and self._failed is None:
            self._failed = future
        self._slots.release()

    def _upload_part(self, number: int, chunk: bytes | bytearray) -> dict[str, Any]:
        response = self._client().upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=chunk,
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def commit(self) -> int:
        """Make the object visible with everything written; returns its size in bytes."""
        if self._finished:
            raise ValueError(f"s3://{self.bucket}/{self.key} already finished")
        if self._upload_id is None:
            # Small objects go up in one request: atomic and cheaper than a multipart upload.
            self._client().put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=self._rest(),
                ContentType=self._content_type,
            )
        else:
            if self._filled:
                self._send_part(self._rest())
            parts = [future.result() for future in self._parts]
            self._client().complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        self._part, self._filled = bytearray(), 0
        self._finished = True
        return self._position

    def abort(self) -> None:
        """Discard everything written; nothing becomes visible under the key. Never raises."""
        if self._finished:
            return
        self._finished = True
        self._part, self._filled = bytearray(), 0
        for future in self._parts:
            future.cancel()
        # Parts already uploading must finish before the abort, or they could outlive it.
        wait(self._parts)
        if self._upload_id is not None:
            # Best effort: if this fails too, S3's lifecycle rule for incomplete multipart
            # uploads reaps the parts; they are never visible as an object either way.
            with contextlib.suppress(Exception):
                self._client().abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
                )
