"""Pool sizing: each worker's share of the connections the server allows."""

from __future__ import annotations

import psycopg
import pytest

from engage_adapters.postgres.pool import (
    DEFAULT_POOL_SIZE,
    HEADROOM,
    connection_budget,
    pool_size_per_worker,
)


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
