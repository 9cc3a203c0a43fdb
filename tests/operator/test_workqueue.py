"""WorkQueue: one worker per Ingestion at a time, starts before progress, retries (real loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kingest.operator.workqueue import WorkQueue


class Recorder:
    """Work that records its calls; `hold` keeps a call of that key running until released."""

    def __init__(self, hold: str | None = None, fail_first: int = 0) -> None:
        self.calls: list[str] = []
        self.hold, self.fail_first = hold, fail_first
        self.release, self.started = asyncio.Event(), asyncio.Event()
        self.running: set[str] = set()
        self.overlapped = False

    async def __call__(self, namespace: str, name: str) -> None:
        self.overlapped |= name in self.running
        self.running.add(name)
        self.calls.append(name)
        failing = len(self.calls) <= self.fail_first
        try:
            if name == self.hold:
                self.started.set()
                await asyncio.wait_for(self.release.wait(), 5)
            else:
                await asyncio.sleep(0)  # an API call: other work goes on meanwhile
            if failing:
                raise RuntimeError("the API server is away")
        finally:
            self.running.discard(name)


async def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        await asyncio.sleep(0.01)


def run(test: Callable[[], Awaitable[Any]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


def test_a_key_added_while_worked_on_is_worked_once_more_never_alongside() -> None:
    async def scenario() -> None:
        work = Recorder(hold="a")
        queue = WorkQueue(work, workers=4)
        queue.start()
        queue.add("ns", "a")
        await asyncio.wait_for(work.started.wait(), 5)
        for _ in range(5):
            queue.add("ns", "a")
            queue.follow("ns", "a")
        work.release.set()
        await wait_for(lambda: len(work.calls) == 2)
        await asyncio.sleep(0.3)
        assert work.calls == ["a", "a"]
        assert not work.overlapped
        await queue.stop()

    run(scenario)


def test_starting_runs_goes_before_following_runs() -> None:
    async def scenario() -> None:
        work = Recorder(hold="blocker")
        queue = WorkQueue(work, workers=1, settle=0.2)
        queue.start()
        queue.add("ns", "blocker")
        await asyncio.wait_for(work.started.wait(), 5)
        queue.follow("ns", "progress")
        queue.add("ns", "new")
        await asyncio.sleep(0.3)  # the follow-up has settled: still the start goes first
        work.release.set()
        await wait_for(lambda: len(work.calls) == 3)
        assert work.calls == ["blocker", "new", "progress"]
        await queue.stop()

    run(scenario)


def test_a_follow_up_waits_to_settle_unless_a_start_is_asked_for() -> None:
    async def scenario() -> None:
        work = Recorder()
        queue = WorkQueue(work, workers=2, settle=0.5)
        queue.start()
        queue.follow("ns", "settling")
        queue.follow("ns", "promoted")
        queue.add("ns", "promoted")
        await wait_for(lambda: bool(work.calls))
        assert work.calls == ["promoted"]
        await wait_for(lambda: len(work.calls) == 2)
        assert work.calls == ["promoted", "settling"]
        await queue.stop()

    run(scenario)


def test_a_settled_follow_up_waits_while_a_start_is_under_way() -> None:
    async def scenario() -> None:
        work = Recorder(hold="starting")
        queue = WorkQueue(work, workers=2, settle=0.1)
        queue.start()
        queue.add("ns", "starting")
        await asyncio.wait_for(work.started.wait(), 5)
        queue.follow("ns", "progress")
        await asyncio.sleep(0.4)  # settled, and a worker idles: still the start goes first
        assert work.calls == ["starting"]
        work.release.set()
        await wait_for(lambda: len(work.calls) == 2)
        assert work.calls == ["starting", "progress"]
        await queue.stop()

    run(scenario)


def test_a_follow_up_is_held_back_by_starts_for_at_most_hold_seconds() -> None:
    async def scenario() -> None:
        work = Recorder(hold="starting")
        queue = WorkQueue(work, workers=2, settle=0.1, hold=0.3)
        queue.start()
        queue.add("ns", "starting")
        await asyncio.wait_for(work.started.wait(), 5)
        queue.follow("ns", "progress")
        await asyncio.sleep(0.2)
        assert work.calls == ["starting"]
        await wait_for(lambda: len(work.calls) == 2, timeout=1)
        assert work.calls == ["starting", "progress"]  # the start is still under way
        assert queue.starting()
        await queue.stop()

    run(scenario)


def test_failed_work_is_retried() -> None:
    async def scenario() -> None:
        work = Recorder(fail_first=1)
        queue = WorkQueue(work, workers=1)
        queue.start()
        queue.add("ns", "a")
        await wait_for(lambda: len(work.calls) == 2)
        assert work.calls == ["a", "a"]
        await queue.stop()

    run(scenario)


def test_starting_lasts_while_start_work_is_queued_or_under_way_not_follow_ups() -> None:
    async def scenario() -> None:
        work = Recorder(hold="a")
        queue = WorkQueue(work, workers=1, settle=0.1)
        assert not queue.starting()
        queue.follow("ns", "progress")
        assert not queue.starting()
        queue.add("ns", "a")
        queue.add("ns", "b")
        queue.follow("ns", "b")  # already queued to start: stays so, counted once
        assert queue.starting()
        queue.start()
        await asyncio.wait_for(work.started.wait(), 5)
        queue.add("ns", "a")  # queued again while under way
        assert queue.starting()
        work.hold = None
        work.release.set()
        await wait_for(lambda: len(work.calls) == 4)
        await asyncio.sleep(0.2)
        assert sorted(work.calls) == ["a", "a", "b", "progress"]
        assert not queue.starting()
        await queue.stop()

    run(scenario)


def test_many_keys_are_worked_on_by_every_worker_at_once() -> None:
    async def scenario() -> None:
        concurrent, peak = 0, 0

        async def slow(namespace: str, name: str) -> None:
            nonlocal concurrent, peak
            concurrent += 1
            peak = max(peak, concurrent)
            await asyncio.sleep(0.05)
            concurrent -= 1

        queue = WorkQueue(slow, workers=8)
        queue.start()
        for number in range(100):
            queue.add("ns", f"i{number}")
        started = time.monotonic()
        await wait_for(lambda: not queue.starting())
        # 100 calls of 50 ms on 8 workers: about 0.65 s, not 5 s one after another.
        assert time.monotonic() - started < 2.0
        assert peak == 8
        await queue.stop()

    run(scenario)


def test_work_is_not_started_before_the_queue_is_ready() -> None:
    async def scenario() -> None:
        work, ready = Recorder(), asyncio.Event()
        queue = WorkQueue(work, workers=2, ready=ready.wait)
        queue.start()
        queue.add("ns", "a")
        await asyncio.sleep(0.3)
        assert work.calls == []
        ready.set()
        await wait_for(lambda: bool(work.calls))
        assert work.calls == ["a"]
        await queue.stop()

    run(scenario)


def test_on_starting_is_told_when_starts_begin_and_when_the_last_one_is_done() -> None:
    async def scenario() -> None:
        told: list[bool] = []
        work = Recorder(hold="a")
        queue = WorkQueue(work, workers=2, settle=0.05, on_starting=told.append)
        queue.follow("ns", "progress")
        queue.start()
        await wait_for(lambda: "progress" in work.calls)
        assert told == []
        queue.add("ns", "a")
        queue.add("ns", "b")  # already starting: not told again
        assert told == [True]
        await asyncio.wait_for(work.started.wait(), 5)
        await wait_for(lambda: "b" in work.calls)
        await asyncio.sleep(0.05)
        assert told == [True]  # "a" is still under way
        work.release.set()
        await wait_for(lambda: len(told) == 2)
        assert told == [True, False]
        queue.add("ns", "c")
        await wait_for(lambda: len(told) == 4)
        assert told == [True, False, True, False]
        await queue.stop()
        assert len(told) == 4  # stopped with nothing starting: nothing to tell

    run(scenario)
