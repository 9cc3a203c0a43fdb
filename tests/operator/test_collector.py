"""The garbage collector's policy: start-up's objects frozen, no collection while runs start."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from kingest.operator import collector
from kingest.operator.workqueue import WorkQueue


@pytest.fixture(autouse=True)
def restored_collector() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


def test_settle_keeps_what_start_up_built_out_of_later_collections() -> None:
    built = {"model": [1, 2, 3]}
    assert any(o is built for o in gc.get_objects())
    collector.settle()
    assert gc.get_freeze_count() > 0
    assert not any(o is built for o in gc.get_objects())
    later = {"job": []}
    assert any(o is later for o in gc.get_objects())


def test_the_collector_is_held_off_while_runs_start_and_runs_once_they_have() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def work(namespace: str, name: str) -> None:
            if name == "slow":
                await release.wait()

        queue = WorkQueue(work, workers=2, settle=0.05, on_starting=collector.StartsHold())
        queue.start()
        queue.follow("ns", "progress")  # a run's progress: not a start
        await asyncio.sleep(0.1)
        assert gc.isenabled()
        queue.add("ns", "fast")
        queue.add("ns", "slow")
        assert not gc.isenabled()
        await asyncio.sleep(0.1)  # "fast" is done, "slow" still starting
        assert not gc.isenabled()
        release.set()
        await asyncio.sleep(0.1)
        assert gc.isenabled()
        await queue.stop()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_hold_lasts_at_most_its_limit_and_a_stopped_queue_ends_it() -> None:
    async def scenario() -> None:
        hold = collector.StartsHold(limit_s=0.2)
        hold(True)
        assert not gc.isenabled() and hold.holding
        await asyncio.sleep(0.3)
        assert gc.isenabled() and not hold.holding
        hold(False)  # the starts end later: nothing more to do
        assert gc.isenabled()

        never = asyncio.Event()

        async def work(namespace: str, name: str) -> None:
            await never.wait()

        queue = WorkQueue(work, workers=1, on_starting=collector.StartsHold())
        queue.start()
        queue.add("ns", "a")
        queue.add("ns", "b")  # waits for the one worker
        await asyncio.sleep(0.05)
        assert not gc.isenabled()
        await queue.stop()  # "b" never starts: no timer of a stopped loop left to end the hold
        assert gc.isenabled()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_collector_disabled_by_someone_else_stays_disabled() -> None:
    async def scenario() -> None:
        gc.disable()
        hold = collector.StartsHold()
        hold(True)
        assert not hold.holding
        hold(False)
        assert not gc.isenabled()

    asyncio.run(asyncio.wait_for(scenario(), 10))
