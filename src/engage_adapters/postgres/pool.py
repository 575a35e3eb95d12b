"""The connection pool: one per process, shared by every repository."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

# Every session speaks UTC, so timestamptz values come back in UTC.
_OPTIONS = "-c TimeZone=UTC -c application_name=engage"


async def open_pool(conninfo: str, *, min_size: int = 1, max_size: int = 10) -> AsyncConnectionPool:
    """Open a pool and wait until its first connection works (a clear error if not)."""
    pool = AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs={"options": _OPTIONS},
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
