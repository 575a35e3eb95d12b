"""The live feed's listener while its database cannot be reached: it keeps trying,
and the log says so once, not once per try."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import pytest
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.live import PostgresMetricFeed


class _Unreachable:
    """What the feed reads of its pool: where the database is (nothing listens there)."""

    conninfo = "postgresql://engage@127.0.0.1:1/engage?connect_timeout=1"
    kwargs: dict[str, Any] = {}


async def test_a_listener_that_cannot_connect_says_so_once_while_it_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="engage.live")
    notices = PostgresMetricFeed(cast(AsyncConnectionPool, _Unreachable())).notices()
    waiting = asyncio.ensure_future(anext(notices))
    await asyncio.sleep(1.3)  # after 0.1 s, 0.5 s and 1 s: three tries or more
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await notices.aclose()

    tries = [r for r in caplog.records if r.getMessage() == "live.listen_failed"]
    assert len(tries) >= 3
    assert [r.levelno for r in tries] == [logging.WARNING] + [logging.DEBUG] * (len(tries) - 1)
