"""Several processes over one Redis share one view of limits, sessions and dashboards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engage_core import RateLimited, Unauthorized
from engage_core.services.dashboard_cache import Lookup

PASSWORD = "correct horse battery staple"


async def test_failed_logins_for_one_email_are_one_stream_across_processes(
    fresh_redis_url: str, processes: Any
) -> None:
    async with processes(fresh_redis_url, 2) as workers:
        await workers[0].auth.sign_up(email="ada@example.com", password=PASSWORD)
        outcomes = []
        for attempt in range(40):
            worker = workers[attempt % 2]
            try:
                await worker.auth.log_in(email="ada@example.com", password="not the password")
            except Unauthorized:
                outcomes.append("refused")
            except RateLimited:
                outcomes.append("limited")

        assert outcomes == ["refused"] * 5 + ["limited"] * 35
        with pytest.raises(RateLimited):  # the right password waits too
            await workers[1].auth.log_in(email="ada@example.com", password=PASSWORD)


async def test_the_address_limit_is_shared_across_processes(
    fresh_redis_url: str, processes: Any
) -> None:
    async with processes(fresh_redis_url, 3) as workers:
        decisions = [
            await workers[n % 3].limiter.hit("auth-address:192.0.2.1", limit=30, window=60)
            for n in range(31)
        ]

    assert [d.allowed for d in decisions] == [True] * 30 + [False]
    assert 59 < decisions[-1].retry_after <= 60


async def test_a_logout_in_one_process_ends_the_session_in_every_other(
    fresh_redis_url: str, processes: Any
) -> None:
    async with processes(fresh_redis_url, 3) as (a, b, c):
        await a.auth.sign_up(email="ada@example.com", password=PASSWORD)
        login = await a.auth.log_in(email="ada@example.com", password=PASSWORD)
        principal = await b.auth.authenticate(login.access_token)
        await c.auth.authenticate(login.access_token)  # "live" now cached, shared

        await a.auth.log_out(principal)

        for worker in (a, b, c):
            with pytest.raises(Unauthorized):
                await worker.auth.authenticate(login.access_token)


def recorder(services: Any) -> list[tuple[str, Lookup]]:
    seen: list[tuple[str, Lookup]] = []
    services.observability.dashboards.observers.append(
        lambda kind, outcome: seen.append((kind, outcome))
    )
    return seen


async def test_a_write_in_one_process_makes_the_next_read_fresh_in_every_other(
    fresh_redis_url: str, processes: Any
) -> None:
    async with processes(fresh_redis_url, 2) as (a, b):
        ada = await a.auth.sign_up(email="ada@example.com", password=PASSWORD)
        seen_by_b = recorder(b)
        at = datetime.now(UTC) - timedelta(hours=1)
        await a.metrics.record(ada.id, metric_type="views", metric_value=1, recorded_at=at)
        assert len((await a.metrics.list(ada.id)).items) == 1  # cached by A
        assert len((await b.metrics.list(ada.id)).items) == 1  # served to B from Redis
        await a.metrics.summary(ada.id)
        await b.metrics.summary(ada.id)

        await a.metrics.record(ada.id, metric_type="views", metric_value=2, recorded_at=at)

        page = await b.metrics.list(ada.id)
        summary = await b.metrics.summary(ada.id)
        assert [m.metric_value.value for m in page.items] == [2, 1]
        assert summary.series[0].points[0].sum == 3
        assert seen_by_b == [
            ("page", Lookup.HIT),
            ("summary", Lookup.HIT),
            ("page", Lookup.MISS),
            ("summary", Lookup.MISS),
        ]


async def test_no_user_is_served_another_users_cached_dashboard(
    fresh_redis_url: str, processes: Any
) -> None:
    async with processes(fresh_redis_url, 2) as (a, b):
        ada = await a.auth.sign_up(email="ada@example.com", password=PASSWORD)
        bob = await a.auth.sign_up(email="bob@example.com", password=PASSWORD)
        await a.metrics.record(ada.id, metric_type="views", metric_value=7)
        await a.metrics.list(ada.id)
        await a.metrics.summary(ada.id)

        assert (await b.metrics.list(bob.id)).items == ()
        assert (await b.metrics.summary(bob.id)).series == ()


async def test_a_backfill_makes_every_users_next_read_fresh(
    fresh_redis_url: str, processes: Any
) -> None:
    from engage_core.services.backfill import RawRow

    async with processes(fresh_redis_url, 2) as (server, operator):
        ada = await server.auth.sign_up(email="ada@example.com", password=PASSWORD)
        assert (await server.metrics.summary(ada.id)).series == ()  # cached: nothing yet

        report = await operator.backfill.backfill(
            [
                RawRow(
                    line=2,
                    email="ada@example.com",
                    metric_type="views",
                    metric_value="5",
                    recorded_at="2026-01-01T00:00:00+00:00",
                )
            ]
        )

        assert report.ok
        assert report.inserted == 1
        assert (await server.metrics.summary(ada.id)).series[0].points[0].sum == 5


async def test_the_redis_timeout_setting_bounds_every_call(
    tmp_path: Any, database_url: str, redis_url: str
) -> None:
    from engage_adapters.bootstrap import build_services
    from engage_adapters.settings import load_settings
    from engage_core.testing import FakePasswordHasher

    settings = load_settings(
        {
            "ENGAGE_JWT_SECRET": "s" * 40,
            "ENGAGE_DATA_DIR": str(tmp_path),
            "ENGAGE_DATABASE_URL": database_url,
            "ENGAGE_REDIS_URL": redis_url,
            "ENGAGE_REDIS_TIMEOUT": "1500ms",
        }
    )
    async with build_services(settings, hasher=FakePasswordHasher()) as services:
        # A call may need a connect and a command, each given the timeout.
        assert services.observability.breakers["redis"].call_timeout == 3.0
