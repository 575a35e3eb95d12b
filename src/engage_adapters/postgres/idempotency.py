"""Idempotency keys and their first responses in PostgreSQL."""

from __future__ import annotations

from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.transaction import connection, rows
from engage_core.ports import Reservation, StoredResponse


class PostgresIdempotencyStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def reserve(
        self, owner: UUID, key: str, fingerprint: str, *, lease: float
    ) -> Reservation:
        # Claim the key if it is free or its holder's time ran out; otherwise
        # report the holder. One statement, so two racing requests cannot both win;
        # ``rows``: with an authenticated request's session check, one round trip.
        claimed = await rows(
            self._pool,
            "INSERT INTO idempotency_keys (owner, key, fingerprint, expires_at)"
            " VALUES (%s, %s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (owner, key) DO UPDATE"
            " SET fingerprint = excluded.fingerprint, status = NULL, body = NULL,"
            " expires_at = excluded.expires_at"
            " WHERE idempotency_keys.expires_at <= now()"
            " RETURNING true",
            [owner, key, fingerprint, lease],
        )
        if claimed:
            return Reservation(first=True)
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "SELECT fingerprint, status, body FROM idempotency_keys"
                " WHERE owner = %s AND key = %s",
                [owner, key],
            )
            row = await cur.fetchone()
        if row is None:  # expired and purged in between: try again
            return await self.reserve(owner, key, fingerprint, lease=lease)
        response = StoredResponse(row[1], bytes(row[2])) if row[1] is not None else None
        return Reservation(first=False, fingerprint=row[0], response=response)

    async def complete(
        self, owner: UUID, key: str, response: StoredResponse, *, ttl: float
    ) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET status = %s, body = %s,"
                " expires_at = now() + make_interval(secs => %s)"
                " WHERE owner = %s AND key = %s",
                [response.status, response.body, ttl, owner, key],
            )

    async def release(self, owner: UUID, key: str) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE owner = %s AND key = %s AND status IS NULL",
                [owner, key],
            )

    async def purge_expired(self) -> int:
        async with connection(self._pool) as conn:
            cur = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= now()")
            return cur.rowcount
