"""The connection pool: one per process, shared by every repository."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

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
    """Open a pool and wait until its first connection works (a clear error if not)."""
    pool = AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs={"options": _OPTIONS},
        open=False,
        timeout=10.0,
        name="engage",
        reset=_in_transaction_mode,
    )
    await pool.open(wait=True, timeout=15.0)
    return pool


@asynccontextmanager
async def autocommit(pool: AsyncConnectionPool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection on which each statement commits on its own.

    For repositories whose every operation is a single statement (atomic by
    itself): on a plain pooled connection each one also costs a BEGIN and a
    COMMIT, two more round trips, which measured 8-9% of the CPU of an
    authenticated read for the session check alone. The pool puts the
    connection back in transaction mode when it returns.
    """
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        yield conn


async def _in_transaction_mode(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's reset: every connection is lent in transaction mode, however
    its last borrower left it."""
    if conn.autocommit:
        await conn.set_autocommit(False)


async def ping(pool: AsyncConnectionPool) -> None:
    """A round trip to the database; raises when it does not answer."""
    async with pool.connection(timeout=2.0) as conn:
        await conn.execute("SELECT 1")
