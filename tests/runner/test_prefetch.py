"""ordered_parallel: results in item order, producers bounded, errors at their turn."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from kingest.runner.prefetch import ordered_parallel


def test_results_come_in_item_order_whatever_finishes_first() -> None:
    def produce(item: int) -> Iterator[tuple[int, int]]:
        time.sleep(0.02 * (5 - item))  # later items finish first
        yield from ((item, part) for part in range(3))

    results = list(ordered_parallel(range(5), produce, parallelism=3))
    assert results == [(i, p) for i in range(5) for p in range(3)]


def test_at_most_parallelism_producers_run_at_once() -> None:
    running, peak = 0, 0
    lock = threading.Lock()

    def produce(item: int) -> Iterator[int]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        yield item

    assert list(ordered_parallel(range(12), produce, parallelism=3)) == list(range(12))
    assert peak <= 3


def test_a_producer_runs_at_most_depth_results_ahead() -> None:
    produced: list[int] = []

    def produce(item: int) -> Iterator[int]:
        for n in range(100):
            produced.append(n)
            yield n

    results = ordered_parallel([0], produce, parallelism=1, depth=2)
    assert next(results) == 0
    time.sleep(0.1)
    assert len(produced) <= 1 + 2 + 1  # consumed + queued + one blocked on a full queue
    results.close()


def test_an_error_is_raised_after_the_results_before_it() -> None:
    def produce(item: int) -> Iterator[int]:
        if item == 2:
            raise ValueError("item 2 is bad")
        yield item

    seen: list[int] = []
    with pytest.raises(ValueError, match="item 2 is bad"):
        for result in ordered_parallel(range(5), produce, parallelism=4):
            seen.append(result)
    assert seen == [0, 1]


def test_closing_the_results_stops_every_producer() -> None:
    stopped = threading.Event()

    def produce(item: int) -> Iterator[int]:
        try:
            while True:
                yield item
        finally:
            stopped.set()

    results = ordered_parallel(range(3), produce, parallelism=3)
    assert next(results) == 0
    results.close()  # returns once the pool's threads are done
    assert stopped.is_set()
