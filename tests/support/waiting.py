"""Waiting, bounded, for what a server's background work writes (a mail marked sent)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

Rows = list[tuple[Any, ...]]


async def rows_once(
    db: Callable[..., Rows], query: str, done: Callable[[Rows], bool], within: float = 10.0
) -> Rows:
    """The rows of ``query`` once ``done(rows)`` holds, or the last ones ``within``
    seconds on (for the test's assertion to show). The wait yields to the event loop,
    where an app under test does its background work."""
    deadline = time.monotonic() + within
    while True:
        rows = db(query)
        if done(rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.02)
