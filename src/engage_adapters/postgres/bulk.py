"""Bulk loads through COPY, and streamed exports through a server-side cursor.

A load runs in one transaction, in chunks: each chunk is copied (binary COPY)
into a staging table, checked for unknown emails and inserted from there, while
a worker thread reads and checks the next chunk of the caller's rows. So the
server's work on one chunk (indexes, foreign keys, rollups) overlaps the Python
of the next, and memory holds two chunks whatever the file's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from engage_core.ports import ExportedMetric, LoadOutcome, RowFault, StagedMetric

CHUNK_ROWS = 100_000  # smaller chunks insert slower: rows of one user are further apart
REPORTED_UNKNOWN = 20

# One load at a time: the user write locks below are taken chunk by chunk, an
# order two concurrent loads could not agree on (and a re-load waits to see the first).
ONE_LOAD_AT_A_TIME = "SELECT pg_advisory_xact_lock(1701270892, 0)"

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

# The write lock of each user in the chunk (see engage_lock_metric_writes), taken
# before the user's first id: ids in commit order per user.
_LOCK_USERS = """
SELECT engage_lock_metric_writes(id)
  FROM (SELECT DISTINCT u.id, hashtext(u.id::text) AS lock_key
          FROM engage_backfill s JOIN users u ON u.email_key = s.email_key
         ORDER BY lock_key) AS owners
"""

# One statement per chunk: the rollup trigger runs once for it. A row equal to
# one stored before this load (user, type, time, value) is skipped; rows this
# load inserted (its own xid) do not count, so equal rows of one file all go in,
# in one chunk or across chunks. Rows go in by user, type and time: the order
# the rollup trigger sorts them into, and local in both indexes.
INSERT_STAGED = """
INSERT INTO engagement_metrics (user_id, metric_type, metric_value, recorded_at)
SELECT u.id, s.metric_type, s.metric_value, s.recorded_at
  FROM engage_backfill s
  JOIN users u ON u.email_key = s.email_key
 WHERE NOT EXISTS (
        SELECT FROM engagement_metrics m
         WHERE m.user_id = u.id AND m.metric_type = s.metric_type
           AND m.recorded_at = s.recorded_at AND m.metric_value = s.metric_value
           AND m.xmin <> pg_current_xact_id()::xid)
 ORDER BY u.id, s.metric_type, s.recorded_at
"""

# The session's cached plans (the rollup trigger's, the foreign key's, the insert's)
# were made for the tables as the first chunk found them; this load grows them.
_REPLAN = "DISCARD PLANS"

_EMPTY_STAGING = "TRUNCATE engage_backfill"


class PostgresBulkMetricStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def load(
        self, rows: Iterable[StagedMetric], *, commit: Callable[[], bool]
    ) -> LoadOutcome:
        unknown: list[RowFault] = []
        unknown_rows = staged = inserted = 0
        writing = False
        async with (
            self._pool.connection() as conn,
            conn.transaction(),
            _ChunkReader(rows) as chunks,
        ):
            await conn.execute(STAGING)
            chunk = await chunks.take()
            while chunk:
                await conn.execute(_REPLAN)
                await _stage(conn, chunk)
                staged += len(chunk)
                chunks.read_next()  # checked on the worker thread while the server inserts
                found = await (await conn.execute(_UNKNOWN, [REPORTED_UNKNOWN])).fetchall()
                if found:
                    unknown_rows += found[0][2]
                    unknown.extend(
                        RowFault(line, f"email {key} is not a user") for line, key, _ in found
                    )
                    del unknown[REPORTED_UNKNOWN:]
                if not unknown_rows and commit():  # once it is no, nothing will be kept
                    if not writing:
                        await conn.execute(ONE_LOAD_AT_A_TIME)
                        writing = True
                    await conn.execute(_LOCK_USERS)
                    inserted += (await conn.execute(INSERT_STAGED)).rowcount
                await conn.execute(_EMPTY_STAGING)
                chunk = await chunks.take()
            if unknown_rows or not commit():
                outcome = LoadOutcome(
                    committed=False,
                    unknown_emails=tuple(unknown),
                    unknown_email_rows=unknown_rows,
                )
                raise psycopg.Rollback  # nothing of this load is kept
            # Leaving the block commits; this is reached only if that succeeded.
            return LoadOutcome(committed=True, inserted=inserted, skipped=staged - inserted)
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


async def _stage(conn: psycopg.AsyncConnection[Any], chunk: list[StagedMetric]) -> None:
    async with conn.cursor() as cur, cur.copy(_COPY) as copy:
        copy.set_types(_COPY_TYPES)
        for m in chunk:
            await copy.write_row((m.line, m.email, m.metric_type, m.metric_value, m.recorded_at))


class _ChunkReader:
    """The caller's rows in chunks of ``CHUNK_ROWS``, each pulled on a worker thread
    (``read_next``), so that the caller's checks run while the server works."""

    def __init__(self, rows: Iterable[StagedMetric]) -> None:
        self._source = iter(rows)
        self._pending: asyncio.Future[list[StagedMetric]] | None = None

    def read_next(self) -> None:
        if self._pending is None:
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._pull))

    async def take(self) -> list[StagedMetric]:
        """The next chunk (empty once the rows are all taken)."""
        self.read_next()
        assert self._pending is not None
        pending, self._pending = self._pending, None
        return await pending

    def _pull(self) -> list[StagedMetric]:
        return list(itertools.islice(self._source, CHUNK_ROWS))

    async def __aenter__(self) -> _ChunkReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Never leave the thread reading the caller's rows once the load is over.
        if self._pending is not None:
            with contextlib.suppress(Exception):
                await self._pending
