"""The one way the operator's parts stop their asyncio tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def cancel(tasks: Iterable[asyncio.Task[None] | None]) -> None:
    """Cancel `tasks` (None: a part never started) and wait until each has ended."""
    started = [task for task in tasks if task is not None]
    for task in started:
        task.cancel()
    await asyncio.gather(*started, return_exceptions=True)
