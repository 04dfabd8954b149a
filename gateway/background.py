"""Background tasks beside the listeners (audit writer, change feed, fleet breakers, directory watcher, worker
upkeep): each is stopped the same way, by cancelling it and waiting until it has ended, so nothing it was doing
outlives the gateway that started it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

AppContext = Callable[[web.Application], AsyncIterator[None]]


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait for it to end; its ``CancelledError`` is the expected way out, not an error."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def while_serving(name: str, run: Callable[[web.Application], Coroutine[Any, Any, None]]) -> AppContext:
    """An aiohttp cleanup context running ``run(app)`` exactly as long as the app: started by its setup, stopped
    by its cleanup (and never left running when a later start-up step fails)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(app), name=name)
        yield
        await stop_task(task)

    return context
