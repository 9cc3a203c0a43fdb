"""Read several files at once while handing out their batches in file order."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

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
