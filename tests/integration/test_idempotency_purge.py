"""Expired idempotency keys are deleted, by the store and on `engage serve`'s
schedule; live ones (in flight or replaying) are kept. Over PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import attrs
import pytest
from psycopg_pool import AsyncConnectionPool

from engage_adapters.bootstrap import Services
from engage_adapters.postgres.idempotency import PostgresIdempotencyStore
from engage_adapters.postgres.users import PostgresUserRepository
from engage_core.model import Email, User
from engage_core.ports import StoredResponse
from engage_core.services.idempotency import fingerprint

REQUEST = fingerprint("POST", "/api/dashboard/metrics", b'{"metric_type": "views"}')
ANSWER = StoredResponse(201, b'{"id": 1}')


async def keys_held(pool: AsyncConnectionPool) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT key FROM idempotency_keys ORDER BY key")
        return [row[0] for row in await cur.fetchall()]


async def test_purge_deletes_expired_keys_and_keeps_live_ones(
    pg_pool: AsyncConnectionPool,
) -> None:
    now = datetime.now(UTC)
    owner = User(
        id=uuid4(),
        email=Email("ada@example.com"),
        password_hash="unused",
        created_at=now,
        updated_at=now,
    )
    await PostgresUserRepository(pg_pool).add(owner)
    store = PostgresIdempotencyStore(pg_pool)
    # A lease or a lifetime of nothing: expired from the moment it is written.
    await store.reserve(owner.id, "abandoned", REQUEST, lease=0)
    await store.reserve(owner.id, "answered", REQUEST, lease=60)
    await store.complete(owner.id, "answered", ANSWER, ttl=0)
    await store.reserve(owner.id, "in-flight", REQUEST, lease=60)
    await store.reserve(owner.id, "replaying", REQUEST, lease=60)
    await store.complete(owner.id, "replaying", ANSWER, ttl=3600)

    assert await store.purge_expired() == 2

    assert await keys_held(pg_pool) == ["in-flight", "replaying"]
    replay = await store.reserve(owner.id, "replaying", REQUEST, lease=60)
    assert replay.response == ANSWER


@pytest.mark.parametrize("storage", ["postgres"])
async def test_the_serve_schedule_purges_expired_idempotency_keys(
    services: Services, pg_pool: AsyncConnectionPool
) -> None:
    owner = (await services.auth.sign_up(email="ada@example.com", password="ada-password-1")).id
    spent = attrs.evolve(services.idempotency, lifetime=timedelta(0))

    async def answer() -> StoredResponse:
        return ANSWER

    await spent.run(user_id=owner, key="spent", request_fingerprint=REQUEST, action=answer)
    await services.idempotency.run(
        user_id=owner, key="kept", request_fingerprint=REQUEST, action=answer
    )

    purged = await services.purge_expired()  # what engage serve's upkeep runs

    assert purged["idempotency_keys"] == 1
    assert await keys_held(pg_pool) == ["kept"]
