"""Sliding-window rate limits in PostgreSQL: what every worker and the CLI share
when there is no Redis (the failed-login counts per email).

A key is one row holding the moments of the events in its window. Counting an
event is one statement that takes the row's lock, so two processes never both
take the last slot. Time is the database's, the one clock every process shares.
Each statement commits by itself, outside any unit of work: a failed login
still counts when the request that saw it rolls back.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from engage_core.ports import RateDecision

_WINDOW_START = "statement_timestamp() - make_interval(secs => %(window)s)"
_EXPIRES = "statement_timestamp() + make_interval(secs => %(window)s)"

_HIT = f"""
INSERT INTO rate_limits AS r (key, events, expires_at)
VALUES (%(key)s, ARRAY[statement_timestamp()], {_EXPIRES})
ON CONFLICT (key) DO UPDATE
   SET events = ARRAY(SELECT e FROM unnest(r.events) AS e WHERE e > {_WINDOW_START} ORDER BY e)
                || statement_timestamp(),
       expires_at = {_EXPIRES}
 WHERE (SELECT count(*) FROM unnest(r.events) AS e WHERE e > {_WINDOW_START}) < %(limit)s
RETURNING cardinality(events)
"""

# Seconds until each event in the window leaves it, soonest first.
_PEEK = f"""
SELECT ARRAY(
    SELECT extract(epoch FROM e + make_interval(secs => %(window)s) - statement_timestamp())
      FROM unnest(events) AS e WHERE e > {_WINDOW_START} ORDER BY e)
  FROM rate_limits WHERE key = %(key)s
"""


class PostgresRateLimiter:
    def __init__(self, pool: AsyncConnectionPool, *, prefix: str = "") -> None:
        self._pool = pool
        self._prefix = prefix

    async def hit(self, key: str, *, limit: int, window: float) -> RateDecision:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _HIT, {"key": self._prefix + key, "limit": limit, "window": window}
            )
            row = await cur.fetchone()
        if row is not None:
            return RateDecision(True, max(0, limit - int(row[0])), 0.0)
        return await self.peek(key, limit=limit, window=window)

    async def peek(self, key: str, *, limit: int, window: float) -> RateDecision:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_PEEK, {"key": self._prefix + key, "window": window})
            row = await cur.fetchone()
        leaving = [float(seconds) for seconds in row[0]] if row else []
        if len(leaving) < limit:
            return RateDecision(True, limit - len(leaving), 0.0)
        # Allowed again once the oldest event that keeps the key at its limit leaves.
        return RateDecision(False, 0, max(0.0, leaving[len(leaving) - limit]))

    async def reset(self, key: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM rate_limits WHERE key = %s", [self._prefix + key])

    async def purge_expired(self) -> int:
        """Delete the keys whose every event has left its window; how many."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM rate_limits WHERE expires_at < now()")
            return cur.rowcount
