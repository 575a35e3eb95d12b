"""`engage serve --workers 2` over one Redis: one stream of limits across the
workers, and a Redis killed in the middle of a load run costs no request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from support.serve import running_server, serve_env
from support.traffic import LoadRun, bad_logins, bearer

WORKERS = 2


@pytest.fixture(scope="module")
def server(
    pg_url: str, module_redis: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``engage serve --workers 2`` with ENGAGE_REDIS_URL set; its base URL."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("TRUNCATE users CASCADE")
    env = serve_env(pg_url, tmp_path_factory.mktemp("engage"), ENGAGE_REDIS_URL=module_redis.url)
    with running_server(env, workers=WORKERS) as (_, base):
        yield base


async def test_bad_logins_for_one_email_over_both_workers_are_one_stream(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        await bearer(client, "ada@example.com")
    responses = await bad_logins([server], "ada@example.com", 40)

    assert [r.status_code for r in responses] == [401] * 5 + [429] * 35


async def test_killing_redis_in_a_load_run_costs_no_request(server: str, module_redis: Any) -> None:
    users = 8
    async with httpx.AsyncClient(base_url=server) as client:
        auths = [await bearer(client, f"load{n}@example.com") for n in range(users)]
    run = LoadRun()
    for auth in auths:
        run.start(server, auth)
    await asyncio.sleep(1.5)
    module_redis.kill()
    await asyncio.sleep(2.0)
    module_redis.restart()
    await asyncio.sleep(3.0)  # past the breaker's cooldown: Redis in use again
    await run.stop()
    async with httpx.AsyncClient(base_url=server) as client:
        ready = (await client.get("/readyz")).json()

    # The figures for the record (pytest -s).
    print(f"\nload run, {WORKERS} workers, {users} clients, Redis killed for 2 s: {run.figures()}")
    assert set(run.outcomes) <= {"200", "201"}, run.outcomes
    assert run.outcomes["200"] > 100
    assert ready["checks"]["redis"] == "ok"
