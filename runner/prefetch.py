"""Read ahead: several files at once with their batches handed out in file order
(:func:`ordered_parallel`), and a fetch started before its result is asked for
(:class:`Lookahead`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")
V = TypeVar("V")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def ordered_parallel(
    items: Sequence[T],
    produce: Callable[[T], Iterator[R]],
    parallelism: int,
    depth: int = 4,
) -> Iterator[R]:
    """Yield ``produce(item)`` for each item in order, running up to ``parallelism`` producers.

    Each producer buffers at most ``depth`` results ahead of the consumer, so memory is bounded
    by ``parallelism * depth`` results whatever the sizes of the items. A producer's exception
    is raised to the consumer when its turn comes. Closing the iterator stops all producers.
    """
    stop = threading.Event()
    queues: dict[int, queue.Queue[object]] = {}

    def put(q: queue.Queue[object], value: object) -> bool:
        while not stop.is_set():
            try:
                q.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(index: int) -> None:
        q = queues[index]
        try:
            for result in produce(items[index]):
                if not put(q, result):
                    return
            put(q, _DONE)
        except BaseException as error:
            put(q, _Failed(error))

    with ThreadPoolExecutor(max_workers=max(1, parallelism), thread_name_prefix="read") as pool:
        submitted = 0

        def submit_next() -> None:
            nonlocal submitted
            if submitted < len(items):
                queues[submitted] = queue.Queue(maxsize=depth)
                pool.submit(work, submitted)
                submitted += 1

        try:
            for _ in range(max(1, parallelism)):
                submit_next()
            for index in range(len(items)):
                q = queues[index]
                while True:
                    result = q.get()
                    if result is _DONE:
                        break
                    if isinstance(result, _Failed):
                        raise result.error
                    yield result  # type: ignore[misc]
                del queues[index]
                submit_next()
        finally:
            stop.set()


class Lookahead(Generic[K, V]):
    """``fetch(key)`` for keys taken in their order, each started while the one before it is
    still being used: asking for a key starts the fetch of the ``ahead`` keys after it.

    It overlaps waiting (a download) with work on the previous result (parsing it), at the
    cost of ``ahead`` results held at once. Keys may be skipped: the fetches of keys before
    the one asked for are cancelled and dropped. A fetch's exception is raised by
    :meth:`take`. Keys are compared by identity, positions by ``keys``' order.
    """

    def __init__(self, keys: Sequence[K], fetch: Callable[[K], V], ahead: int = 1) -> None:
        self._keys = list(keys)
        self._index = {id(key): i for i, key in enumerate(self._keys)}
        self._fetch = fetch
        self._ahead = ahead
        self._pool = ThreadPoolExecutor(max_workers=max(1, ahead), thread_name_prefix="fetch")
        self._started: dict[int, Future[V]] = {}
        self._lock = threading.Lock()

    def take(self, key: K) -> V:
        """The result for ``key``, waited for; starts the fetches of the keys after it."""
        position = self._index[id(key)]
        with self._lock:
            for skipped in [i for i in self._started if i < position]:
                self._started.pop(skipped).cancel()
            future = self._started.pop(position, None) or self._pool.submit(self._fetch, key)
            for after in range(position + 1, min(position + 1 + self._ahead, len(self._keys))):
                if after not in self._started:
                    self._started[after] = self._pool.submit(self._fetch, self._keys[after])
        return future.result()

    def close(self) -> None:
        """Cancel the fetches not yet running and drop every result not taken."""
        with self._lock:
            for future in self._started.values():
                future.cancel()
            self._started.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
