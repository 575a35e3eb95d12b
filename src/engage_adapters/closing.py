"""Closing with a bound: a shutdown ends within seconds, whatever one close does.

A close that waits for a peer (a pool handing back connections, a Redis or
mail server that went quiet) or a task that misses its cancellation (3.11's
``asyncio.wait_for`` drops a cancel that lands as its inner future completes)
would otherwise hold the process open forever. Each close here is given
``CLOSE_TIMEOUT`` seconds; one that is still going then is left behind, with
a warning naming it, and the shutdown goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("engage.shutdown")

CLOSE_TIMEOUT = 5.0
# How often a task that outlives its cancel is cancelled again while it is awaited.
RECANCEL_EVERY = 0.1


async def close_within(
    name: str, close: Callable[[], Awaitable[object]], within: float | None = None
) -> None:
    """Await ``close()`` for at most ``within`` seconds (``CLOSE_TIMEOUT``), then
    cancel it and return with a warning. Its errors propagate."""
    limit = CLOSE_TIMEOUT if within is None else within
    closing: asyncio.Future[Any] = asyncio.ensure_future(close())
    try:
        done, _ = await asyncio.wait({closing}, timeout=limit)
    except asyncio.CancelledError:
        closing.cancel()
        raise
    if not done:
        closing.cancel()
        # Its outcome, whenever it comes, is not anyone's to handle: keep it out of the log.
        closing.add_done_callback(_forget)
        log.warning("shutdown.close_cut", extra={"close": name, "after_seconds": limit})
        return
    closing.result()


async def stop_task(name: str, task: asyncio.Task[Any], within: float | None = None) -> None:
    """Cancel ``task`` and wait for it to end, at most ``within`` seconds
    (``CLOSE_TIMEOUT``), cancelling it again meanwhile; then leave it, with a warning."""
    limit = CLOSE_TIMEOUT if within is None else within
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            task.add_done_callback(_forget)
            log.warning("shutdown.task_left_running", extra={"task": name, "after_seconds": limit})
            return
        task.cancel()
        await asyncio.wait({task}, timeout=min(RECANCEL_EVERY, left))
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


def _forget(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
