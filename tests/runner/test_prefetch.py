"""ordered_parallel: results in item order, producers bounded, errors at their turn.
Lookahead: the next fetch runs while a result is used, at most ``ahead`` of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from kingest.runner.prefetch import Lookahead, ordered_parallel


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


class _Fetches:
    """A fetch that records which keys it was called for and blocks until released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, key: str) -> str:
        with self.lock:
            self.started.append(key)
        self.release.wait(5)
        if key == "bad":
            raise OSError("fetching bad failed")
        return key.upper()


def _started_soon(fetches: _Fetches, count: int) -> list[str]:
    deadline = time.monotonic() + 2
    while len(fetches.started) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # time for a fetch that should not start to show up
    return list(fetches.started)


def test_taking_a_key_starts_the_fetch_of_the_next_one_while_it_is_used() -> None:
    fetches = _Fetches()
    keys = ["a", "b", "c", "d"]
    ahead = Lookahead(keys, fetches, ahead=1)
    fetches.release.set()
    assert ahead.take(keys[0]) == "A"
    # "b" downloads while "a" is used; "c" waits until "b" is asked for.
    assert _started_soon(fetches, 2) == ["a", "b"]
    assert ahead.take(keys[1]) == "B"
    assert _started_soon(fetches, 3) == ["a", "b", "c"]
    ahead.close()


def test_no_more_than_ahead_fetches_run_before_they_are_asked_for() -> None:
    fetches = _Fetches()
    keys = ["a", "b", "c", "d", "e"]
    ahead = Lookahead(keys, fetches, ahead=2)
    fetches.release.set()
    assert ahead.take(keys[0]) == "A"
    assert _started_soon(fetches, 3) == ["a", "b", "c"]
    ahead.close()


def test_skipped_keys_are_dropped_and_a_failed_fetch_raises_when_taken() -> None:
    fetches = _Fetches()
    keys = ["a", "b", "bad", "d"]
    ahead = Lookahead(keys, fetches, ahead=1)
    fetches.release.set()
    assert ahead.take(keys[0]) == "A"
    assert _started_soon(fetches, 2) == ["a", "b"]
    with pytest.raises(OSError, match="fetching bad failed"):
        ahead.take(keys[2])  # "b", fetched ahead, is never taken
    assert ahead.take(keys[3]) == "D"
    assert _started_soon(fetches, 4) == ["a", "b", "bad", "d"]
    ahead.close()


def test_close_cancels_fetches_that_have_not_started() -> None:
    fetches = _Fetches()
    keys = ["a", "b", "c"]
    ahead = Lookahead(keys, fetches, ahead=2)
    taking = threading.Thread(target=ahead.take, args=(keys[0],))
    taking.start()
    # "a" and "b" run on the two workers (blocked); "c" waits for one of them.
    assert sorted(_started_soon(fetches, 2)) == ["a", "b"]
    ahead.close()
    fetches.release.set()
    taking.join(5)
    time.sleep(0.1)
    assert sorted(fetches.started) == ["a", "b"]
