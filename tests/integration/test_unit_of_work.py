"""PostgresUnitOfWork beyond the contract: isolation between tasks, a lost
connection, and single statements that stay in autocommit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.transaction import PostgresUnitOfWork, connection
from engage_adapters.postgres.users import PostgresUserRepository
from engage_core.model import Email, User


def _user(email: str) -> User:
    now = datetime.now(UTC)
    return User(
        id=uuid4(), email=Email(email), password_hash="old-hash", created_at=now, updated_at=now
    )


async def _stored_hash(pg_url: str, user_id: UUID) -> str | None:
    """Read on a connection of its own: what every other process sees."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT password_hash FROM users WHERE id = %s", [user_id])
        row = await cur.fetchone()
    return row[0] if row else None


@pytest.fixture
def users(pg_pool: AsyncConnectionPool) -> PostgresUserRepository:
    return PostgresUserRepository(pg_pool)


@pytest.fixture
def uow(pg_pool: AsyncConnectionPool) -> PostgresUnitOfWork:
    return PostgresUnitOfWork(pg_pool)


async def test_other_connections_see_a_units_writes_only_once_it_commits(
    uow: PostgresUnitOfWork, users: PostgresUserRepository, pg_url: str
) -> None:
    alice = _user("alice@example.com")
    await users.add(alice)

    async with uow.atomic():
        await users.set_password_hash(alice.id, "new-hash", datetime.now(UTC))
        seen_before_commit = await _stored_hash(pg_url, alice.id)

    assert seen_before_commit == "old-hash"
    assert await _stored_hash(pg_url, alice.id) == "new-hash"


async def test_another_tasks_single_statement_is_not_part_of_the_unit(
    uow: PostgresUnitOfWork, users: PostgresUserRepository, pg_url: str
) -> None:
    alice, bob = _user("alice@example.com"), _user("bob@example.com")
    await users.add(alice)
    await users.add(bob)
    unit_wrote, outsider_done = asyncio.Event(), asyncio.Event()

    async def failing_unit() -> None:
        async with uow.atomic():
            await users.set_password_hash(alice.id, "alice-new", datetime.now(UTC))
            unit_wrote.set()
            await outsider_done.wait()
            raise LookupError

    async def outsider() -> str | None:
        await unit_wrote.wait()
        await users.set_password_hash(bob.id, "bob-new", datetime.now(UTC))
        seen = await _stored_hash(pg_url, bob.id)
        outsider_done.set()
        return seen

    outcomes = await asyncio.gather(failing_unit(), outsider(), return_exceptions=True)

    assert isinstance(outcomes[0], LookupError)
    assert outcomes[1] == "bob-new"  # committed at once, while the unit was open
    assert await _stored_hash(pg_url, alice.id) == "old-hash"
    assert await _stored_hash(pg_url, bob.id) == "bob-new"


async def test_a_connection_lost_between_two_steps_leaves_nothing_of_the_first(
    uow: PostgresUnitOfWork,
    users: PostgresUserRepository,
    pg_pool: AsyncConnectionPool,
    pg_url: str,
) -> None:
    alice = _user("alice@example.com")
    await users.add(alice)

    async def change_then_lose_the_connection() -> None:
        async with uow.atomic():
            await users.set_password_hash(alice.id, "new-hash", datetime.now(UTC))
            async with connection(pg_pool) as conn:
                backend = conn.info.backend_pid
            async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", [backend])
            await users.add(_user("bob@example.com"))

    with pytest.raises(psycopg.OperationalError):
        await change_then_lose_the_connection()

    assert await _stored_hash(pg_url, alice.id) == "old-hash"
    assert await users.get(alice.id) is not None  # the pool carries on without it


async def test_a_statement_outside_a_unit_leaves_no_transaction_open(
    uow: PostgresUnitOfWork, pg_pool: AsyncConnectionPool
) -> None:
    async with connection(pg_pool) as conn:
        await conn.execute("SELECT 1")
        outside = conn.info.transaction_status
    async with uow.atomic(), connection(pg_pool) as conn:
        await conn.execute("SELECT 1")
        inside = conn.info.transaction_status
    async with pg_pool.connection() as conn:
        returned = (conn.autocommit, conn.info.transaction_status)

    assert outside is TransactionStatus.IDLE
    assert inside is TransactionStatus.INTRANS
    assert returned == (True, TransactionStatus.IDLE)
