"""`engage serve --workers 2` over one Redis: one stream of limits across the
workers, and a Redis killed in the middle of a load run costs no request."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from support.serve import running_server

PASSWORD = "correct horse battery staple"
WORKERS = 2


@pytest.fixture(scope="module")
def server(
    pg_url: str, module_redis: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``engage serve --workers 2`` with ENGAGE_REDIS_URL set; its base URL."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("TRUNCATE users CASCADE")
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_REDIS_URL": module_redis.url,
        "ENGAGE_JWT_SECRET": "s" * 40,
        "ENGAGE_DATA_DIR": str(tmp_path_factory.mktemp("engage")),
        "ENGAGE_BCRYPT_ROUNDS": "4",
        "ENGAGE_AUTH_RATE_PER_MINUTE": "100000",
        "ENGAGE_LOG_LEVEL": "WARNING",
    }
    with running_server(env, workers=WORKERS) as (_, base):
        yield base


async def bearer(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    credentials = {"email": email, "password": PASSWORD}
    assert (await client.post("/api/auth/signup", json=credentials)).status_code == 201
    response = await client.post("/api/auth/token", json=credentials)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_bad_logins_for_one_email_over_both_workers_are_one_stream(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        await bearer(client, "ada@example.com")
    wrong = {"email": "ada@example.com", "password": "not the password"}
    statuses = []
    for _ in range(40):
        # A new connection each time, so the workers take turns as the kernel pleases.
        async with httpx.AsyncClient(base_url=server) as client:
            statuses.append((await client.post("/api/auth/login", json=wrong)).status_code)

    assert statuses == [401] * 5 + [429] * 35


async def test_killing_redis_in_a_load_run_costs_no_request(server: str, module_redis: Any) -> None:
    users = 8
    async with httpx.AsyncClient(base_url=server) as client:
        auths = [await bearer(client, f"load{n}@example.com") for n in range(users)]
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    stop = asyncio.Event()

    async def user(auth: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=server, headers=auth, timeout=10) as client:
            while not stop.is_set():
                for method, path, body in (
                    ("GET", "/api/auth/me", None),
                    ("POST", "/api/dashboard/metrics", {"metric_type": "load", "metric_value": 1}),
                    ("GET", "/api/dashboard/metrics", None),
                    ("GET", "/api/dashboard/summary", None),
                ):
                    started = time.perf_counter()
                    try:
                        response = await client.request(method, path, json=body)
                    except httpx.TransportError as exc:
                        outcomes[type(exc).__name__] += 1
                        continue
                    latencies.append(time.perf_counter() - started)
                    outcomes[str(response.status_code)] += 1

    load = [asyncio.create_task(user(auth)) for auth in auths]
    await asyncio.sleep(1.5)
    module_redis.kill()
    await asyncio.sleep(2.0)
    module_redis.restart()
    await asyncio.sleep(3.0)  # past the breaker's cooldown: Redis in use again
    stop.set()
    await asyncio.gather(*load)
    async with httpx.AsyncClient(base_url=server) as client:
        ready = (await client.get("/readyz")).json()

    latencies.sort()
    print(  # the figures for the record (pytest -s)
        f"\nload run, {WORKERS} workers, {users} clients, Redis killed for 2 s: "
        f"{sum(outcomes.values())} requests {dict(outcomes)}, "
        f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )
    assert set(outcomes) <= {"200", "201"}, outcomes
    assert outcomes["200"] > 100
    assert ready["checks"]["redis"] == "ok"
