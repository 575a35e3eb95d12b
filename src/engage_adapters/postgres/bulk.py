"""Bulk loads through COPY, and streamed exports through a server-side cursor.

A load is one transaction: the rows stream into a staging table (binary COPY)
as the caller checks them, then one INSERT takes the new ones into
``engagement_metrics`` (its rollup trigger runs once, over the whole load).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from engage_core.ports import (
    MAX_REPORTED_FAULTS,
    ExportedMetric,
    LoadOutcome,
    RowFault,
    StagedMetric,
)

STAGING = """
CREATE TEMP TABLE engage_backfill (
    line         bigint NOT NULL,
    email_key    text NOT NULL,
    metric_type  text NOT NULL,
    metric_value numeric NOT NULL,
    recorded_at  timestamptz NOT NULL
) ON COMMIT DROP
"""

# Binary COPY: psycopg's C dumpers write each row, and the server parses no text.
_COPY = (
    "COPY engage_backfill (line, email_key, metric_type, metric_value, recorded_at)"
    " FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = ("int8", "text", "text", "numeric", "timestamptz")

_UNKNOWN = """
SELECT s.line, s.email_key, count(*) OVER ()
  FROM engage_backfill s
 WHERE NOT EXISTS (SELECT FROM users u WHERE u.email_key = s.email_key)
 ORDER BY s.line
 LIMIT %s
"""

# The write lock of each user in the load (see engage_lock_metric_writes), taken
# in one order by every load, before the first id: ids in commit order per user.
_LOCK_USERS = """
SELECT engage_lock_metric_writes(id)
  FROM (SELECT DISTINCT u.id, hashtext(u.id::text) AS lock_key
          FROM engage_backfill s JOIN users u ON u.email_key = s.email_key
         ORDER BY lock_key) AS owners
"""

# One statement: the rollup trigger runs once for the whole load, and the rows
# stored before it are all it sees, so equal rows of one file all go in. A row
# equal to one already stored (user, type, time, value) is skipped. Rows go in
# by user, type and time: the order the rollup trigger sorts them into (cheap to
# sort again when already in it), and local in both indexes.
INSERT_STAGED = """
INSERT INTO engagement_metrics (user_id, metric_type, metric_value, recorded_at)
SELECT u.id, s.metric_type, s.metric_value, s.recorded_at
  FROM engage_backfill s
  JOIN users u ON u.email_key = s.email_key
 WHERE NOT EXISTS (
        SELECT FROM engagement_metrics m
         WHERE m.user_id = u.id AND m.metric_type = s.metric_type
           AND m.recorded_at = s.recorded_at AND m.metric_value = s.metric_value)
 ORDER BY u.id, s.metric_type, s.recorded_at
"""


class PostgresBulkMetricStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def load(
        self, rows: Iterable[StagedMetric], *, commit: Callable[[], bool]
    ) -> LoadOutcome:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(STAGING)
            async with conn.cursor() as cur, cur.copy(_COPY) as copy:
                copy.set_types(_COPY_TYPES)
                for m in rows:
                    await copy.write_row(
                        (m.line, m.email, m.metric_type, m.metric_value, m.recorded_at)
                    )
            unknown = await (await conn.execute(_UNKNOWN, [MAX_REPORTED_FAULTS])).fetchall()
            if unknown or not commit():
                outcome = LoadOutcome(
                    committed=False,
                    unknown_emails=tuple(
                        RowFault(line, f"email {email} is not a user") for line, email, _ in unknown
                    ),
                    unknown_email_rows=unknown[0][2] if unknown else 0,
                )
                raise psycopg.Rollback  # nothing of this load is kept
            staged = await (await conn.execute("SELECT count(*) FROM engage_backfill")).fetchone()
            await conn.execute(_LOCK_USERS)
            inserted = (await conn.execute(INSERT_STAGED)).rowcount
            total = staged[0] if staged else 0
            # Leaving the block commits; this is reached only if that succeeded.
            return LoadOutcome(committed=True, inserted=inserted, skipped=total - inserted)
        return outcome  # rolled back

    async def export(
        self, *, user_id: UUID | None, since: datetime | None, until: datetime | None
    ) -> AsyncGenerator[ExportedMetric, None]:
        conditions = [sql.SQL("TRUE")]
        params: dict[str, Any] = {}
        if user_id is not None:
            conditions.append(sql.SQL("m.user_id = %(user)s"))
            params["user"] = user_id
        if since is not None:
            conditions.append(sql.SQL("m.recorded_at >= %(since)s"))
            params["since"] = since
        if until is not None:
            conditions.append(sql.SQL("m.recorded_at < %(until)s"))
            params["until"] = until
        query = sql.SQL(
            "SELECT u.email, m.metric_type, m.metric_value, m.recorded_at"
            " FROM engagement_metrics m JOIN users u ON u.id = m.user_id"
            " WHERE {} ORDER BY m.user_id, m.recorded_at, m.id"
        ).format(sql.SQL(" AND ").join(conditions))
        # A server-side cursor lives in a transaction (the pool's connections autocommit).
        async with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(name="engage_export") as cur,
        ):
            cur.itersize = 5_000
            await cur.execute(query, params)
            async for email, metric_type, value, recorded_at in cur:
                yield ExportedMetric(email, metric_type, value, recorded_at)
