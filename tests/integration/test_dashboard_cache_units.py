"""Cached dashboards stay fresh when a metric write is part of a unit of work (as a
keyed write is): a read by another request before the unit commits cannot see
the write, and what it caches is thrown away once the unit commits."""

from __future__ import annotations

import asyncio
import contextvars
from datetime import UTC, datetime
from uuid import uuid4

from psycopg_pool import AsyncConnectionPool

from engage_adapters.dashboard_codec import JsonDashboardCodec
from engage_adapters.postgres.metrics import PostgresMetricRepository
from engage_adapters.postgres.transaction import PostgresUnitOfWork
from engage_adapters.postgres.users import PostgresUserRepository
from engage_core.model import Email, User
from engage_core.queries import CursorCodec
from engage_core.services.dashboard_cache import CachedMetricRepository, DashboardCache
from engage_core.services.metrics import MetricsService
from engage_core.testing import FakeClock, InMemoryCache


async def test_a_read_before_a_units_commit_leaves_no_stale_dashboard(
    pg_pool: AsyncConnectionPool,
) -> None:
    clock = FakeClock(datetime.now(UTC))
    ada = User(
        id=uuid4(),
        email=Email("ada@example.com"),
        password_hash="hash",
        created_at=clock.now(),
        updated_at=clock.now(),
    )
    await PostgresUserRepository(pg_pool).add(ada)
    uow = PostgresUnitOfWork(pg_pool)
    metrics = MetricsService(
        metrics=CachedMetricRepository(
            PostgresMetricRepository(pg_pool),
            DashboardCache(InMemoryCache(clock), JsonDashboardCodec()),
            uow,
        ),
        clock=clock,
        cursors=CursorCodec(b"k" * 32),
    )

    async with uow.atomic():
        await metrics.record(ada.id, metric_type="views", metric_value=1)
        # Another request, outside this unit: it reads (and caches) the page without the write.
        other = asyncio.create_task(metrics.list(ada.id), context=contextvars.Context())
        assert (await other).items == ()

    assert len((await metrics.list(ada.id)).items) == 1
