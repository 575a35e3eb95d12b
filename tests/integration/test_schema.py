"""The schema's promises: indexes that serve the hot reads, cascades, hashed tokens."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.metrics import PostgresMetricRepository
from engage_adapters.postgres.sessions import PostgresSessionRepository
from engage_adapters.postgres.users import PostgresUserRepository
from engage_core.model import Email, MetricDraft, Session, User
from support.rows import insert_users

T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def _user(pool: AsyncConnectionPool, email: str = "a@example.com") -> User:
    user = User(
        id=uuid.uuid4(), email=Email(email), password_hash="h", created_at=T0, updated_at=T0
    )
    await PostgresUserRepository(pool).add(user)
    return user


async def _load(pool: AsyncConnectionPool, users: int, per_user: int) -> list[uuid.UUID]:
    ids = await insert_users(pool, users)
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO engagement_metrics (user_id, metric_type, metric_value, recorded_at)"
            " SELECT u, 'type_' || (g %% 5), g, %s - g * interval '1 minute'"
            " FROM unnest(%s::uuid[]) u, generate_series(1, %s) g",
            [T0, ids, per_user],
        )
        await conn.execute("ANALYZE")
    return ids


async def _plan(pool: AsyncConnectionPool, query: str, params: list[object]) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute(f"EXPLAIN (FORMAT JSON) {query}", params)
        row = await cur.fetchone()
    assert row is not None
    return json.dumps(row[0])


async def test_newest_first_page_reads_the_user_newest_index(pg_pool: AsyncConnectionPool) -> None:
    ids = await _load(pg_pool, users=50, per_user=200)
    plan = await _plan(
        pg_pool,
        "SELECT id FROM engagement_metrics WHERE user_id = %s"
        " AND (recorded_at, id) < (%s, %s) ORDER BY recorded_at DESC, id DESC LIMIT 50",
        [ids[0], T0, 10**9],
    )
    assert "engagement_metrics_user_newest" in plan
    assert '"Sort"' not in plan


async def test_a_type_in_a_time_range_reads_the_user_type_time_index(
    pg_pool: AsyncConnectionPool,
) -> None:
    ids = await _load(pg_pool, users=50, per_user=200)
    plan = await _plan(
        pg_pool,
        "SELECT id FROM engagement_metrics WHERE user_id = %s AND metric_type = %s"
        " AND recorded_at >= %s AND recorded_at < %s ORDER BY recorded_at DESC, id DESC LIMIT 50",
        [ids[0], "type_1", T0 - timedelta(hours=2), T0],
    )
    assert "engagement_metrics_user_type_time" in plan
    assert '"Seq Scan"' not in plan


async def test_deleting_a_user_deletes_their_metrics_sessions_and_rollups(
    pg_pool: AsyncConnectionPool,
) -> None:
    gone, kept = await _user(pg_pool, "gone@example.com"), await _user(pg_pool, "kept@example.com")
    metrics = PostgresMetricRepository(pg_pool)
    sessions = PostgresSessionRepository(pg_pool)
    for user in (gone, kept):
        draft = MetricDraft.parse(metric_type="t", metric_value=1, recorded_at=T0, now=T0)
        await metrics.add(user.id, draft)
        await sessions.add(
            Session(
                id=uuid.uuid4(),
                user_id=user.id,
                family_id=uuid.uuid4(),
                token_hash=uuid.uuid4().hex,
                created_at=T0,
                expires_at=T0 + timedelta(days=1),
            )
        )
    assert await PostgresUserRepository(pg_pool).delete(gone.id)
    async with pg_pool.connection() as conn:
        for table in ("engagement_metrics", "sessions", "metric_rollups"):
            cur = await conn.execute(f"SELECT user_id FROM {table}")  # noqa: S608 - fixed names
            assert {r[0] for r in await cur.fetchall()} == {kept.id}, table


async def test_metric_ids_are_bigint(pg_pool: AsyncConnectionPool) -> None:
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'engagement_metrics' AND column_name = 'id'"
        )
        assert await cur.fetchone() == ("bigint",)


@pytest.mark.parametrize("other", ["A@EXAMPLE.COM", "a@Example.com"])
async def test_emails_are_unique_whatever_their_case(
    pg_pool: AsyncConnectionPool, other: str
) -> None:
    from engage_core.errors import Conflict

    await _user(pg_pool, "a@example.com")
    with pytest.raises(Conflict):
        await _user(pg_pool, other)
