"""WorkQueue: one worker per Ingestion at a time, starts before progress, retries (real threads)."""

from __future__ import annotations

import threading
import time

from kingest.operator.workqueue import WorkQueue


class Recorder:
    """Work that records its calls; `hold` keeps a call of that key running until released."""

    def __init__(self, hold: str | None = None, fail_first: int = 0) -> None:
        self.calls: list[str] = []
        self.hold, self.fail_first = hold, fail_first
        self.release, self.started = threading.Event(), threading.Event()
        self.running: set[str] = set()
        self.overlapped = False
        self.lock = threading.Lock()

    def __call__(self, namespace: str, name: str) -> None:
        with self.lock:
            self.overlapped |= name in self.running
            self.running.add(name)
            self.calls.append(name)
            failing = len(self.calls) <= self.fail_first
        try:
            if name == self.hold:
                self.started.set()
                self.release.wait(5)
            if failing:
                raise RuntimeError("the API server is away")
        finally:
            with self.lock:
                self.running.discard(name)


def wait_for(condition: object, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():  # type: ignore[operator]
        time.sleep(0.01)


def test_a_key_added_while_worked_on_is_worked_once_more_never_alongside() -> None:
    work = Recorder(hold="a")
    queue = WorkQueue(work, workers=4)
    queue.start()
    queue.add("ns", "a")
    assert work.started.wait(5)
    for _ in range(5):
        queue.add("ns", "a")
        queue.follow("ns", "a")
    work.release.set()
    wait_for(lambda: len(work.calls) == 2)
    time.sleep(0.3)
    assert work.calls == ["a", "a"]
    assert not work.overlapped


def test_starting_runs_goes_before_following_runs() -> None:
    work = Recorder(hold="blocker")
    queue = WorkQueue(work, workers=1, settle=0.2)
    queue.start()
    queue.add("ns", "blocker")
    assert work.started.wait(5)
    queue.follow("ns", "progress")
    queue.add("ns", "new")
    time.sleep(0.3)  # the follow-up has settled: still the start goes first
    work.release.set()
    wait_for(lambda: len(work.calls) == 3)
    assert work.calls == ["blocker", "new", "progress"]


def test_a_follow_up_waits_to_settle_unless_a_start_is_asked_for() -> None:
    work = Recorder()
    queue = WorkQueue(work, workers=2, settle=0.5)
    queue.start()
    queue.follow("ns", "settling")
    queue.follow("ns", "promoted")
    queue.add("ns", "promoted")
    wait_for(lambda: work.calls)
    assert work.calls == ["promoted"]
    wait_for(lambda: len(work.calls) == 2)
    assert work.calls == ["promoted", "settling"]


def test_work_is_not_started_before_the_queue_is_ready() -> None:
    work, ready = Recorder(), threading.Event()
    queue = WorkQueue(work, workers=2, ready=ready.wait)
    queue.start()
    queue.add("ns", "a")
    time.sleep(0.3)
    assert work.calls == []
    ready.set()
    wait_for(lambda: work.calls)
    assert work.calls == ["a"]


def test_failed_work_is_retried() -> None:
    work = Recorder(fail_first=1)
    queue = WorkQueue(work, workers=1)
    queue.start()
    queue.add("ns", "a")
    wait_for(lambda: len(work.calls) == 2)
    assert work.calls == ["a", "a"]


def test_starting_lasts_while_start_work_is_queued_or_under_way_not_follow_ups() -> None:
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
    assert work.started.wait(5)
    queue.add("ns", "a")  # queued again while under way
    assert queue.starting()
    work.hold = None
    work.release.set()
    wait_for(lambda: len(work.calls) == 4)
    time.sleep(0.2)
    assert sorted(work.calls) == ["a", "a", "b", "progress"]
    assert not queue.starting()
