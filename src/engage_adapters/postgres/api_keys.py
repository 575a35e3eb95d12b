"""API keys in PostgreSQL: ``secret_hash`` holds an HMAC of the key, never the key.

Each operation is one statement (autocommit outside a unit of work). Revoking
a key, or deleting it with its user, notifies the live streams it authorised
(a trigger, migration 0006). The check behind a request (``run_checked``) is
``engage_key_check`` (migration 0008), which counts the use in ``rate_limits``
too and is sent in one pipeline with the request's own first statement: one
round trip for all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.rate_limits import PostgresRateLimiter
from engage_adapters.postgres.transaction import SessionGate, connection
from engage_core.model import ApiKey, ApiKeyScope, OwnedApiKey
from engage_core.ports import LAST_USED_RESOLUTION, KeyRefused, RateCount

T = TypeVar("T")

_COLUMNS = (
    "id, user_id, name, secret_hash, scopes, created_at, expires_at, last_used_at, revoked_at"
)


def _key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(
        id=row[0],
        user_id=row[1],
        name=row[2],
        secret_hash=row[3],
        scopes=frozenset(ApiKeyScope(s) for s in row[4]),
        created_at=row[5],
        expires_at=row[6],
        last_used_at=row[7],
        revoked_at=row[8],
    )


# The key when it passes, else an error with one of these SQLSTATEs.
_CHECK = f"SELECT {_COLUMNS} FROM engage_key_check(%s, %s, %s, %s, %s, %s, %s, %s)"
_REFUSALS: dict[str, Literal["unknown", "revoked", "expired", "scope", "rate"]] = {
    "EGK01": "unknown",
    "EGK02": "revoked",
    "EGK03": "expired",
    "EGK04": "scope",
    "EGK05": "rate",
}


class PostgresApiKeyRepository:
    def __init__(self, pool: AsyncConnectionPool, *, limit_prefix: str = "") -> None:
        self._pool = pool
        # The prefix of the PostgresRateLimiter whose limits ``run_checked`` counts in.
        self._limits = PostgresRateLimiter(pool, prefix=limit_prefix)
        self._limit_prefix = limit_prefix

    async def add(self, key: ApiKey) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                f"INSERT INTO api_keys ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    key.id,
                    key.user_id,
                    key.name,
                    key.secret_hash,
                    sorted(scope.value for scope in key.scopes),
                    key.created_at,
                    key.expires_at,
                    key.last_used_at,
                    key.revoked_at,
                ],
            )

    async def get(self, key_id: UUID) -> ApiKey | None:
        async with connection(self._pool) as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = %s", [key_id])
            row = await cur.fetchone()
        return _key(row) if row else None

    async def for_user(self, user_id: UUID) -> Sequence[ApiKey]:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM api_keys WHERE user_id = %s AND revoked_at IS NULL"
                " ORDER BY created_at DESC, id",
                [user_id],
            )
            return [_key(row) for row in await cur.fetchall()]

    async def every_key(self) -> Sequence[OwnedApiKey]:
        columns = ", ".join(f"k.{c.strip()}" for c in _COLUMNS.split(","))
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"SELECT {columns}, u.email FROM api_keys k JOIN users u ON u.id = k.user_id"
                " WHERE k.revoked_at IS NULL ORDER BY u.email_key, k.created_at DESC, k.id"
            )
            return [OwnedApiKey(key=_key(row), email=row[-1]) for row in await cur.fetchall()]

    async def count_usable(self, user_id: UUID, at: datetime) -> int:
        async with connection(self._pool) as conn:
            # In the unit of work that adds a key, the user's row stays locked until
            # it ends: two creations count one after the other, so the cap holds
            # (NO KEY UPDATE: writes of the user's metrics are not held up).
            await conn.execute("SELECT FROM users WHERE id = %s FOR NO KEY UPDATE", [user_id])
            cur = await conn.execute(
                "SELECT count(*) FROM api_keys WHERE user_id = %s AND revoked_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > %s)",
                [user_id, at],
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def revoke(self, key_id: UUID, at: datetime) -> ApiKey | None:
        async with connection(self._pool) as conn:
            # The owner's row is share-locked before the key's row is updated: the
            # revocation's activity row refers to the user (a share lock, taken later in
            # its unit of work), and deleting the user locks that row before its cascade
            # reaches the key's; taken in the other order, the two deadlock. A user
            # deleted meanwhile has no key left to revoke (None).
            cur = await conn.execute(
                "WITH owner AS (SELECT u.id FROM api_keys k JOIN users u ON u.id = k.user_id"
                " WHERE k.id = %s FOR KEY SHARE OF u)"
                " UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL"
                f" AND user_id = (SELECT id FROM owner) RETURNING {_COLUMNS}",
                [key_id, at, key_id],
            )
            row = await cur.fetchone()
        return _key(row) if row else None

    async def touch(self, key_id: UUID, at: datetime) -> None:
        # Conditional, so that many workers seeing a stale time write it once.
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE api_keys SET last_used_at = %s WHERE id = %s"
                " AND (last_used_at IS NULL OR last_used_at <= %s)",
                [at, key_id, at - LAST_USED_RESOLUTION],
            )

    async def run_checked(
        self,
        key_id: UUID,
        user_id: UUID,
        secret_hash: str,
        scope: ApiKeyScope,
        at: datetime,
        work: Callable[[], Awaitable[T]],
        *,
        count: RateCount | None = None,
    ) -> tuple[ApiKey, T] | KeyRefused:
        rate = (
            (self._limit_prefix + count.key, count.limit, count.window)
            if count is not None
            else (None, None, None)
        )
        params = (key_id, user_id, secret_hash, scope.value, at, *rate)
        gate = SessionGate(self._pool, _CHECK, params, frozenset(_REFUSALS))
        try:
            checked = await gate.run(work)
        except Exception:
            await self._count_again(gate, count)
            raise
        if isinstance(checked, str):
            return KeyRefused(_REFUSALS[checked], gate.refused_detail)
        row, result = checked
        return _key(row), result

    async def _count_again(self, gate: SessionGate, count: RateCount | None) -> None:
        """The use counted once more when the work's statement, failing, rolled back
        the count the check made with it: a key passed is counted, whatever the work did."""
        if count is not None and gate.rolled_back:
            await self._limits.hit(count.key, limit=count.limit, window=count.window)
