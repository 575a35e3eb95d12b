"""A key revoked while its user's account is deleted: one waits for the other, never a
deadlock (which the deletion answered as a 503 "try again").

The revocation updates the key's row, then records the activity, whose reference to
the user takes a share lock on the user's row; the deletion locks the user's row, then
its cascade the key's. The revocation therefore takes the user's row first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import psycopg
import pytest

from engage_adapters.bootstrap import Services

WAIT = 10.0  # how long the deletion may take to wait on a lock (it takes milliseconds)


@pytest.fixture
def storage() -> str:
    return "postgres"


async def waiting_on_a_lock(conn: psycopg.AsyncConnection[Any], pid: int) -> None:
    async with asyncio.timeout(WAIT):
        while True:
            cur = await conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
            )
            row = await cur.fetchone()
            if row is not None and row[0] == "Lock":
                return
            await asyncio.sleep(0.02)


async def test_a_revocation_racing_the_users_deletion_does_not_deadlock(
    services: Services, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await services.admin.create_user(email="keys@example.com", password="a good passphrase")
    issued = await services.api_keys.create(user.id, name="sensor", scopes=["metrics:read"])
    deleter = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    watcher = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    deletion: asyncio.Task[Any] | None = None
    repository = services.api_keys.keys
    revoke: Callable[[UUID, Any], Awaitable[Any]] = repository.revoke

    async def revoke_then_let_the_deletion_in(key_id: UUID, at: Any) -> Any:
        """The key's row revoked (its unit of work still open): the deletion starts
        and goes as far as the locks let it before the activity is recorded."""
        nonlocal deletion
        revoked = await revoke(key_id, at)
        deletion = asyncio.create_task(
            deleter.execute("DELETE FROM users WHERE id = %s", [user.id])
        )
        await waiting_on_a_lock(watcher, deleter.info.backend_pid)
        return revoked

    monkeypatch.setattr(repository, "revoke", revoke_then_let_the_deletion_in)
    try:
        revoked = await services.api_keys.revoke(user.id, issued.key.id)
        assert deletion is not None
        deleted = await asyncio.wait_for(deletion, WAIT)
    finally:
        if deletion is not None and not deletion.done():
            deletion.cancel()
        await deleter.close()
        await watcher.close()

    assert revoked.revoked_at is not None
    assert deleted.rowcount == 1
    assert await services.api_keys.list_for(user.id) == []
