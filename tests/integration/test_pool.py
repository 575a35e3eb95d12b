"""Pool sizing: each worker's share of the connections the server allows; and a pool
that gives up on a server that answers nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from engage_adapters.postgres.outage import unavailable_from
from engage_adapters.postgres.pool import (
    DEFAULT_POOL_SIZE,
    HEADROOM,
    PING_ANSWER_WITHIN,
    connection_budget,
    open_pool,
    ping,
    pool_size_per_worker,
)
from support.postgres_server import DisposablePostgres, disposable_postgres


async def test_the_budget_is_max_connections_less_the_reserved_slots(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting::int FROM pg_settings WHERE name IN ("
                "'max_connections', 'superuser_reserved_connections', 'reserved_connections')"
            ).fetchall()
        )
    expected = settings["max_connections"] - settings["superuser_reserved_connections"]
    expected -= settings.get("reserved_connections", 0)

    budget = await connection_budget(pg_url)

    assert budget == expected
    assert 0 < budget < settings["max_connections"]


@pytest.mark.parametrize(
    ("workers", "budget", "size"),
    [
        (1, 97, DEFAULT_POOL_SIZE),
        (2, 97, DEFAULT_POOL_SIZE),
        (8, 97, 10),  # 80 + 10 kept <= 97
        (9, 97, 9),
        (16, 97, 5),  # 80 + 10 kept <= 97
        (64, 97, 1),  # too many workers for the server: one each, at least
        (4, 5_000, DEFAULT_POOL_SIZE),
    ],
)
def test_workers_share_the_budget_less_the_headroom(workers: int, budget: int, size: int) -> None:
    assert pool_size_per_worker(workers, budget) == size
    assert size == 1 or workers * size <= budget - HEADROOM


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DisposablePostgres]:
    with disposable_postgres(tmp_path_factory.mktemp("frozen-pg")) as running:
        yield running


async def test_a_statement_a_frozen_server_leaves_unanswered_fails_as_an_outage(
    server: DisposablePostgres,
) -> None:
    async with await open_pool(server.url, min_size=2, max_size=2, answer_within=1.0) as pool:
        async with pool.connection() as conn:  # a connection in hand before the freeze
            await conn.execute("SELECT 1")
            with server.frozen():
                started = time.monotonic()
                with pytest.raises(psycopg.OperationalError) as caught:
                    await conn.execute("SELECT 1")
                waited = time.monotonic() - started
            assert conn.closed  # what the server made of the statement is unknown
        assert 1.0 <= waited < 5.0
        assert unavailable_from(caught.value) is not None  # a 503, as for a database down

        async with pool.connection() as conn:  # the pool heals by itself
            assert await (await conn.execute("SELECT 2")).fetchone() == (2,)


async def test_the_readiness_ping_of_a_frozen_server_fails_within_its_own_bound(
    server: DisposablePostgres,
) -> None:
    # No answer_within on the pool: the ping bounds its own wait.
    async with await open_pool(server.url, min_size=1, max_size=1) as pool:
        await ping(pool)  # a pooled connection, warm
        with server.frozen():
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError):
                await ping(pool)
            waited = time.monotonic() - started
        # Its pooled connection's answer, then a connection of its own (2 s to connect).
        assert waited < PING_ANSWER_WITHIN + 2 + 2
        await ping(pool)  # and ready again once the server is


async def test_without_answer_within_a_slow_statement_is_waited_for(
    server: DisposablePostgres,
) -> None:
    async with (
        await open_pool(server.url, min_size=1, max_size=1) as pool,
        pool.connection() as conn,
    ):
        assert await (await conn.execute("SELECT 3 FROM pg_sleep(1.5)")).fetchone() == (3,)
