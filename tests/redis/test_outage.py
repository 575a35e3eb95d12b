"""Redis dies, stalls and comes back in the middle of a run: no request fails,
sessions ended meanwhile stay ended, and Redis is used again once it is back."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import httpx
import pytest
import redis.asyncio as aioredis

from engage_adapters.redis_breaker import COOLDOWN, RETRY_INTERVAL
from engage_core import Unauthorized

PASSWORD = "correct horse battery staple"
METRICS = "/api/dashboard/metrics"
SUMMARY = "/api/dashboard/summary"


def redis_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "engage.redis" and r.levelno >= logging.WARNING
    ]


async def keys_in(url: str) -> list[bytes]:
    client = aioredis.Redis.from_url(url, socket_timeout=5)
    try:
        return [key async for key in client.scan_iter("engage:*")]
    finally:
        await client.aclose()


async def a_bit_of_everything(client: httpx.AsyncClient, auth: dict[str, str]) -> list[int]:
    """One round of what users do; the status of each request."""
    bad_login = {"email": f"{uuid4().hex}@example.com", "password": "wrong password"}
    responses = [
        await client.get("/api/auth/me", headers=auth),
        await client.post(METRICS, json={"metric_type": "views", "metric_value": 1}, headers=auth),
        await client.get(METRICS, headers=auth),
        await client.get(SUMMARY, headers=auth),
        await client.post("/api/auth/login", json=bad_login),
    ]
    return [r.status_code for r in responses]


EXPECTED = [200, 201, 200, 200, 401]


def total_views(summary: dict[str, Any]) -> Decimal:
    return sum((Decimal(str(p["sum"])) for s in summary["series"] for p in s["points"]), Decimal(0))


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        if match and match[1] == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(match[3])
    return 0.0


async def wait_out_the_cooldown() -> None:
    await asyncio.sleep(COOLDOWN + 0.1)


async def test_killing_redis_mid_run_fails_no_request_and_it_is_used_again_when_back(
    disposable_redis: Any, http: Any, bearer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="engage.redis")
    async with http(disposable_redis.url) as client:
        auth = await bearer(client, "ada@example.com")
        assert await a_bit_of_everything(client, auth) == EXPECTED
        assert await keys_in(disposable_redis.url)  # Redis is in use

        disposable_redis.kill()
        during = [await a_bit_of_everything(client, auth) for _ in range(10)]
        ready = await client.get("/readyz")
        scraped = (await client.get("/metrics")).text

        assert during == [EXPECTED] * 10
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "redis": "degraded: circuit open"}
        assert sample(scraped, "engage_circuit_state", dependency="redis") == 2
        assert len(redis_warnings(caplog)) == 1
        assert "circuit_opened" in redis_warnings(caplog)[0]

        disposable_redis.restart()
        await wait_out_the_cooldown()
        after = [await a_bit_of_everything(client, auth) for _ in range(3)]
        ready = await client.get("/readyz")
        scraped = (await client.get("/metrics")).text

        assert after == [EXPECTED] * 3
        assert ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
        assert sample(scraped, "engage_circuit_state", dependency="redis") == 0
        assert await keys_in(disposable_redis.url)  # in use again
        assert len(redis_warnings(caplog)) == 2
        assert "circuit_closed" in redis_warnings(caplog)[1]


async def test_a_session_ended_while_redis_is_down_stays_ended_when_it_restarts(
    disposable_redis: Any, http: Any, bearer: Any
) -> None:
    async with http(disposable_redis.url) as client:
        auth = await bearer(client, "ada@example.com")
        assert (await client.get("/api/auth/me", headers=auth)).status_code == 200  # cached live

        disposable_redis.kill()
        assert (await client.post("/api/auth/logout", headers=auth)).status_code == 204
        assert (await client.get("/api/auth/me", headers=auth)).status_code == 401

        disposable_redis.restart()
        await wait_out_the_cooldown()
        assert (await client.get("/readyz")).json()["checks"]["redis"] == "ok"

        assert (await client.get("/api/auth/me", headers=auth)).status_code == 401


async def test_a_session_ended_while_redis_stalls_stays_ended_when_it_answers_again(
    disposable_redis: Any, http: Any, bearer: Any
) -> None:
    """The stalled Redis still holds "live" for the session when it comes back:
    the epoch moved on after the outage, so nobody trusts that answer."""
    async with http(disposable_redis.url) as client:
        auth = await bearer(client, "ada@example.com")
        assert (await client.get("/api/auth/me", headers=auth)).status_code == 200  # cached live

        disposable_redis.pause()
        assert (await client.post("/api/auth/logout", headers=auth)).status_code == 204
        assert (await client.get("/api/auth/me", headers=auth)).status_code == 401

        disposable_redis.resume()
        await wait_out_the_cooldown()

        assert (await client.get("/api/auth/me", headers=auth)).status_code == 401


async def test_a_dashboard_changed_while_redis_stalls_is_fresh_when_it_answers_again(
    disposable_redis: Any, http: Any, bearer: Any
) -> None:
    async with http(disposable_redis.url) as client:
        auth = await bearer(client, "ada@example.com")
        metric = {"metric_type": "views", "metric_value": 2}
        assert (await client.post(METRICS, json=metric, headers=auth)).status_code == 201
        assert total_views((await client.get(SUMMARY, headers=auth)).json()) == 2  # cached
        assert total_views((await client.get(SUMMARY, headers=auth)).json()) == 2  # a hit

        disposable_redis.pause()
        assert (await client.post(METRICS, json=metric, headers=auth)).status_code == 201
        disposable_redis.resume()
        await wait_out_the_cooldown()

        assert total_views((await client.get(SUMMARY, headers=auth)).json()) == 4


async def test_another_process_refuses_the_session_once_the_ending_one_is_back(
    disposable_redis: Any, processes: Any
) -> None:
    """Process A ends a session while Redis stalls; B saw no outage (it was idle)
    and Redis still says "live". A's first call after the outage moves the epoch
    on, and from then B reads PostgreSQL's answer."""
    async with processes(disposable_redis.url, 2) as (a, b):
        await a.auth.sign_up(email="ada@example.com", password=PASSWORD)
        login = await a.auth.log_in(email="ada@example.com", password=PASSWORD)
        principal = await b.auth.authenticate(login.access_token)  # B caches "live"

        disposable_redis.pause()
        breaker = a.observability.breakers["redis"]
        while breaker.state != "open":  # A notices; the write below is skipped
            await a.readiness()
        await a.auth.log_out(principal)
        disposable_redis.resume()
        await wait_out_the_cooldown()
        assert (await a.readiness()).checks["redis"] == "ok"  # A's first call: back

        with pytest.raises(Exception, match="authentication required"):
            await b.auth.authenticate(login.access_token)


async def test_a_write_lost_while_redis_stalls_reaches_other_processes_with_no_more_requests(
    disposable_redis: Any, processes: Any
) -> None:
    """The writer could not reach Redis for a logout and a new metric, then is idle:
    its own background retry moves the epoch on soon after Redis answers again,
    so the reader, which saw no outage, stops trusting its cached answers."""
    async with processes(disposable_redis.url, 2) as (writer, reader):
        ada = await writer.auth.sign_up(email="ada@example.com", password=PASSWORD)
        login = await writer.auth.log_in(email="ada@example.com", password=PASSWORD)
        principal = await reader.auth.authenticate(login.access_token)  # "live" cached
        at = datetime.now(UTC) - timedelta(hours=1)
        await writer.metrics.record(ada.id, metric_type="views", metric_value=1, recorded_at=at)
        assert len((await reader.metrics.list(ada.id)).items) == 1  # cached

        disposable_redis.pause()
        await writer.auth.log_out(principal)  # its cache delete is lost
        await writer.metrics.record(ada.id, metric_type="views", metric_value=2, recorded_at=at)
        disposable_redis.resume()
        back = time.monotonic()

        # No call on the writer from here: only the reader is asked, as in a
        # deployment whose other process gets no traffic.
        while True:
            try:
                await reader.auth.authenticate(login.access_token)
            except Unauthorized:
                break
            assert time.monotonic() - back < COOLDOWN + 2 * RETRY_INTERVAL + 1.0
            await asyncio.sleep(0.1)
        assert len((await reader.metrics.list(ada.id)).items) == 2


async def test_readiness_reports_a_stalled_redis_without_failing(
    disposable_redis: Any, http: Any, bearer: Any
) -> None:
    async with http(disposable_redis.url) as client:
        disposable_redis.pause()
        states = [(await client.get("/readyz")).json() for _ in range(4)]

    assert [s["status"] for s in states] == ["ok"] * 4
    assert states[0]["checks"]["redis"] == "degraded: unreachable"
    assert states[-1]["checks"]["redis"] == "degraded: circuit open"
