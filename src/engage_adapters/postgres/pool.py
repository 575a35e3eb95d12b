"""The connection pool: one per process, shared by every repository."""

from __future__ import annotations

import psycopg
from psycopg_pool import AsyncConnectionPool

# Every session speaks UTC, so timestamptz values come back in UTC.
_OPTIONS = "-c TimeZone=UTC -c application_name=engage"
# A worker is one event loop on one core: a handful of connections keep it busy
# (each request holds one for a single statement), more only queue in PostgreSQL.
DEFAULT_POOL_SIZE = 10
# Connections left for everything but the workers: the CLI, backups, psql.
HEADROOM = 10


async def connection_budget(conninfo: str) -> int:
    """How many connections the server lets ordinary roles open at once:
    max_connections less the slots it reserves for superusers and others."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT sum(setting::int * CASE name WHEN 'max_connections' THEN 1 ELSE -1 END)"
            " FROM pg_settings"
            " WHERE name IN ("
            "'max_connections', 'superuser_reserved_connections', 'reserved_connections')"
        )
        row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def pool_size_per_worker(workers: int, budget: int) -> int:
    """Each worker's pool: DEFAULT_POOL_SIZE, or fewer so that all the workers
    together stay within ``budget`` less HEADROOM (at least one each)."""
    return max(1, min(DEFAULT_POOL_SIZE, (budget - HEADROOM) // workers))


async def open_pool(
    conninfo: str, *, min_size: int = 1, max_size: int = DEFAULT_POOL_SIZE
) -> AsyncConnectionPool:
    """Open a pool and wait until its first connection works (a clear error if not).

    Every connection is in autocommit: the repositories' operations are single
    statements (atomic by themselves), and a BEGIN and a COMMIT around each
    would be two more round trips (8-9% of an authenticated read's CPU, for
    the session check alone). Work that needs several statements to commit
    together says so with ``conn.transaction()`` (bulk loads, the export's
    server-side cursor). Connections go back to the pool as they are, with no
    reset step, which psycopg_pool would run in a background task per return.
    """
    pool = AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs={"options": _OPTIONS, "autocommit": True},
        open=False,
        timeout=10.0,
        name="engage",
    )
    await pool.open(wait=True, timeout=15.0)
    return pool


async def ping(pool: AsyncConnectionPool) -> None:
    """A round trip to the database; raises when it does not answer."""
    async with pool.connection(timeout=2.0) as conn:
        await conn.execute("SELECT 1")
