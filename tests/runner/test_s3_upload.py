"""ObjectSink: an object becomes visible only on commit; abort discards every part."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kingest.runner.s3_upload import ObjectSink

PART = 5 * 1024 * 1024


class Store:
    """A fake S3 client recording what a sink asks of it."""

    def __init__(self, fail_part: int | None = None) -> None:
        self.calls: list[str] = []
        self.parts: dict[int, int] = {}
        self.objects: dict[str, bytes] = {}
        self.fail_part = fail_part

    def put_object(self, *, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        self.calls.append("put")
        self.objects[Key] = Body
        return {}

    def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        self.calls.append("create")
        return {"UploadId": "u1"}

    def upload_part(self, *, PartNumber: int, Body: bytes, **_: Any) -> dict[str, Any]:
        if PartNumber == self.fail_part:
            raise OSError(f"part {PartNumber} failed")
        self.parts[PartNumber] = len(Body)
        return {"ETag": f"e{PartNumber}"}

    def complete_multipart_upload(self, *, Key: str, MultipartUpload: Any, **_: Any) -> None:
        self.calls.append("complete")
        numbers = [p["PartNumber"] for p in MultipartUpload["Parts"]]
        assert numbers == sorted(numbers)
        self.objects[Key] = b"x" * sum(self.parts[n] for n in numbers)

    def abort_multipart_upload(self, **_: Any) -> None:
        self.calls.append("abort")


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def test_a_small_object_is_one_put_on_commit_and_nothing_before(pool: ThreadPoolExecutor) -> None:
    store = Store()
    sink = ObjectSink(lambda: store, "b", "k", pool)
    sink.write(b"hello ")
    sink.write(memoryview(b"world"))
    assert store.calls == [] and sink.tell() == 11
    assert sink.commit() == 11
    assert store.calls == ["put"] and store.objects["k"] == b"hello world"


def test_the_client_is_asked_for_only_by_the_first_request(pool: ThreadPoolExecutor) -> None:
    # The destination makes its client on a thread while the first file is encoded.
    store, asked = Store(), []

    def client() -> Store:
        asked.append(len(store.calls))
        return store

    sink = ObjectSink(client, "b", "k", pool)
    sink.write(b"x" * (PART - 1))
    assert asked == []
    sink.write(b"xx")  # the first part is full: the upload starts
    assert asked and asked[0] == 0
    sink.commit()
    assert store.calls == ["create", "complete"]


def test_a_large_object_goes_up_in_parts_completed_on_commit(pool: ThreadPoolExecutor) -> None:
    store = Store()
    sink = ObjectSink(lambda: store, "b", "k", pool)
    for _ in range(5):
        sink.write(b"x" * (PART // 2 + 1))
    assert "complete" not in store.calls and "k" not in store.objects
    assert sink.commit() == 5 * (PART // 2 + 1)
    assert store.calls == ["create", "complete"]
    assert len(store.objects["k"]) == 5 * (PART // 2 + 1)
    assert all(size == PART for n, size in store.parts.items() if n < max(store.parts))


def test_abort_discards_the_upload_and_nothing_becomes_visible(pool: ThreadPoolExecutor) -> None:
    store = Store()
    sink = ObjectSink(lambda: store, "b", "k", pool)
    sink.write(b"x" * (2 * PART + 1))
    sink.abort()
    assert store.calls == ["create", "abort"] and store.objects == {}
    sink.abort()  # a second abort is harmless
    with pytest.raises(ValueError, match="finished"):
        sink.write(b"more")


def test_abort_never_raises_even_when_the_store_fails(pool: ThreadPoolExecutor) -> None:
    store = Store()

    def broken(**_: Any) -> None:
        raise OSError("store down")

    store.abort_multipart_upload = broken  # type: ignore[method-assign]
    sink = ObjectSink(lambda: store, "b", "k", pool)
    sink.write(b"x" * (PART + 1))
    sink.abort()


def test_a_failed_part_fails_the_commit_and_the_object_stays_invisible(
    pool: ThreadPoolExecutor,
) -> None:
    store = Store(fail_part=2)
    sink = ObjectSink(lambda: store, "b", "k", pool)
    with pytest.raises(OSError, match="part 2 failed"):
        for _ in range(4):
            sink.write(b"x" * PART)
        sink.commit()
    sink.abort()
    assert "complete" not in store.calls and store.objects == {}
