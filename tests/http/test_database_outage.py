"""A PostgreSQL outage through the real app: 503 with Retry-After, never a 500 or a
hang, and the service heals by itself once the database is back.

The database is a server of this module's own (the session's shared one must
never go away), crashed with ``pg_ctl stop -m immediate`` and started again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from engage_adapters.postgres import migrate
from engage_http import problems
from support.postgres_server import DisposablePostgres, disposable_postgres

# A request during an outage waits for the pool at most 2 s; this only tells
# such a wait from a hang.
HANG_LIMIT = 6.0
# The contract: ready again within 10 s of the database's restart.
HEAL_LIMIT = 10.0
LONG_OUTAGE = 17.0
PASSWORD = "correct horse battery staple"  # the one Api's steps use
TABLES = "users, engagement_metrics, sessions, metric_rollups, idempotency_keys"
METRIC = {"metric_type": "steps", "metric_value": 42}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DisposablePostgres]:
    with disposable_postgres(tmp_path_factory.mktemp("outage-pg")) as running:
        asyncio.run(migrate.upgrade(running.url))
        yield running


@pytest.fixture
def database_url(server: DisposablePostgres) -> str:
    """Overrides the suite's: this module's own server, up and emptied."""
    if not server.running:
        server.start()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return server.url


async def answer(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The response, which must come before ``HANG_LIMIT``."""
    async with asyncio.timeout(HANG_LIMIT):
        return await client.request(method, url, **kwargs)


def assert_unavailable(response: httpx.Response, expect_problem: Callable[..., Any]) -> None:
    body = expect_problem(response, 503)
    assert body["type"].endswith(":unavailable"), body
    assert int(response.headers["Retry-After"]) >= 1
    assert "127.0.0.1" not in response.text  # the driver's words stay in the log


async def ready_again(client: httpx.AsyncClient) -> None:
    """Poll /readyz until it is 200; fail after ``HEAL_LIMIT``."""
    async with asyncio.timeout(HEAL_LIMIT):
        while True:
            if (await client.get("/readyz")).status_code == 200:
                return
            await asyncio.sleep(0.2)


async def test_requests_that_need_the_database_get_503_with_retry_after_while_it_is_down(
    server: DisposablePostgres, client: httpx.AsyncClient, api: Any, expect_problem: Any
) -> None:
    auth = await api.new_user("ada@example.com")
    await api.record(auth, **METRIC)

    server.crash()

    for method, url, body in [
        ("POST", "/api/dashboard/metrics", METRIC),
        ("POST", "/api/dashboard/metrics/batch", {"items": [METRIC]}),
        ("GET", "/api/dashboard/metrics", None),
        ("GET", "/api/dashboard/summary", None),
        ("GET", "/api/auth/me", None),
        ("POST", "/api/auth/token", {"email": "ada@example.com", "password": PASSWORD}),
    ]:
        response = await answer(client, method, url, json=body, headers=auth)
        assert_unavailable(response, expect_problem)
    assert (await client.get("/healthz")).status_code == 200


async def test_the_log_says_an_outage_once_not_once_per_request(
    server: DisposablePostgres,
    client: httpx.AsyncClient,
    api: Any,
    expect_problem: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Longer than the 2 s a request waits for the pool: the requests come one at a time.
    monkeypatch.setattr(problems, "OUTAGE_QUIET", 2.5, raising=False)
    auth = await api.new_user("ada@example.com")
    caplog.set_level(logging.WARNING, logger="engage.http")

    def said(event: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith(event)]

    for requests in (3, 1):  # two outages, each told as one
        server.crash()
        for _ in range(requests):
            response = await answer(client, "GET", "/api/dashboard/metrics", headers=auth)
            assert_unavailable(response, expect_problem)
        assert len(said("http.database_unreachable reason=")) == 1
        assert said("http.database_unreachable_over") == []
        await asyncio.sleep(3.0)  # quiet for longer than OUTAGE_QUIET
        [over] = said("http.database_unreachable_over")
        assert over.startswith(f"http.database_unreachable_over: {requests} requests got 503")
        server.start()
        await ready_again(client)
        caplog.clear()


async def test_a_signup_while_the_database_is_down_gets_503_and_can_be_retried(
    server: DisposablePostgres, client: httpx.AsyncClient, api: Any, expect_problem: Any
) -> None:
    server.crash()

    refused = await answer(
        client,
        "POST",
        "/api/auth/signup",
        json={"email": "grace@example.com", "password": PASSWORD},
    )
    assert_unavailable(refused, expect_problem)

    server.start()
    await ready_again(client)
    await api.sign_up("grace@example.com")  # 201: the refused signup stored nothing


async def test_after_a_long_outage_readyz_and_requests_recover_within_10_s(
    server: DisposablePostgres, client: httpx.AsyncClient, api: Any
) -> None:
    auth = await api.new_user("ada@example.com")
    assert (await client.get("/readyz")).status_code == 200

    server.crash()
    # A load balancer's probe, every second; long enough for reconnection
    # delays that double each time to grow past 10 s.
    clock = asyncio.get_running_loop()
    back_at = clock.time() + LONG_OUTAGE
    while clock.time() < back_at:
        down = await answer(client, "GET", "/readyz")
        assert down.status_code == 503
        assert down.json()["checks"]["database"] != "ok"
        await asyncio.sleep(1.0)
    server.start()

    await ready_again(client)
    await api.record(auth, **METRIC)


async def test_connections_the_restart_cut_are_dropped_not_handed_to_requests(
    server: DisposablePostgres,
    client: httpx.AsyncClient,
    api: Any,
    db: Callable[..., list[tuple[Any, ...]]],
) -> None:
    auth = await api.new_user("ada@example.com")
    # Fill the pool with idle connections, which the crash then leaves dead.
    await asyncio.gather(*(api.record(auth, **METRIC) for _ in range(8)))

    server.crash()
    server.start()

    # Not one of these fails on a dead connection, and no readiness probe
    # went first to use them up.
    await asyncio.gather(*(api.record(auth, **METRIC) for _ in range(8)))
    assert db("SELECT count(*) FROM engagement_metrics") == [(16,)]


async def test_an_idempotent_write_refused_in_an_outage_runs_when_retried_with_its_key(
    server: DisposablePostgres,
    client: httpx.AsyncClient,
    api: Any,
    expect_problem: Any,
    db: Callable[..., list[tuple[Any, ...]]],
) -> None:
    auth = await api.new_user("ada@example.com")
    keyed = {**auth, "Idempotency-Key": "outage-1"}

    server.crash()
    refused = await answer(client, "POST", "/api/dashboard/metrics", json=METRIC, headers=keyed)
    assert_unavailable(refused, expect_problem)

    server.start()
    await ready_again(client)
    first = await client.post("/api/dashboard/metrics", json=METRIC, headers=keyed)
    again = await client.post("/api/dashboard/metrics", json=METRIC, headers=keyed)

    assert first.status_code == 201, first.text  # the key was not left taken
    assert again.status_code == 201
    assert again.json() == first.json()
    assert db("SELECT count(*) FROM engagement_metrics") == [(1,)]
