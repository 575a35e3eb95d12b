"""The live stream's feed: PostgreSQL's LISTEN/NOTIFY on one connection per process.

Triggers (migration 0006) notify ``engage_metrics`` with "<user> <first id>
<last id> <count>" per user and inserting statement, and ``engage_access``
with "family <id>" or "key <id>" when a signed-in device's session or an API
key ends: ids only, far below NOTIFY's 8,000 bytes. PostgreSQL delivers them
in commit order. The rows themselves are read through the pool.

Metric notifications cost their writers a WAL flush under a server-wide lock,
so the trigger sends them only for users in ``live_followers``: each process
lists there (by its listening connection's pid) the users it has streams of,
with how many (migration 0009). A follow answers the user's streams over every
listener still connected, which is how one user's streams are bounded for the
whole deployment rather than per process.

The new rows of a notification are read through the pool, and the reads asked
for while one is under way (a burst of writes, one read per user) are made
together, in one statement, when it is done: one pooled connection for a
burst rather than one per user, each waiting behind the writers' own.

The listening connection is its own, outside the pool. When it is lost
(a restart, ``pg_terminate_backend``, a network fault) it is opened again
within a second or two, and the feed says ``Listening(resumed=True)``: the
streams then read from the table whatever they would have been told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.metrics import stored_metric
from engage_adapters.postgres.transaction import connection
from engage_core.model import EngagementMetric, GrantId
from engage_core.ports import AccessEnded, Listening, MetricsAdded, Notice

log = logging.getLogger("engage.live")

METRICS_CHANNEL = "engage_metrics"
ACCESS_CHANNEL = "engage_access"
LISTENER_NAME = "engage-live"
# How long the connection may stay silent before a round trip checks it is still there.
CHECK_EVERY = 15.0
RECONNECT_DELAYS = (0.1, 0.5, 1.0, 2.0)


def parse_notice(channel: str, payload: str) -> Notice | None:
    try:
        if channel == METRICS_CHANNEL:
            user, first, last, count = payload.split(" ")
            return MetricsAdded(UUID(user), int(first), int(last), int(count))
        if channel == ACCESS_CHANNEL:
            kind, grant = payload.split(" ")
            if kind in ("family", "key"):
                return AccessEnded(GrantId(kind, UUID(grant)))  # type: ignore[arg-type]
    except ValueError:
        pass
    log.warning("live.unreadable_notification", extra={"channel": channel})
    return None


# The new rows of several users at once: each request's own range and limit.
_READ_MANY = (
    "SELECT w.n, m.id, m.metric_type, m.metric_value, m.recorded_at"
    " FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[], %s::int[]) WITH ORDINALITY"
    " AS w(user_id, after_id, through_id, row_limit, n)"
    " CROSS JOIN LATERAL (SELECT id, metric_type, metric_value, recorded_at"
    " FROM engagement_metrics e WHERE e.user_id = w.user_id AND e.id > w.after_id"
    " AND e.id <= w.through_id ORDER BY e.id LIMIT w.row_limit) AS m"
    " ORDER BY w.n, m.id"
)


class _Read:
    """One asked-for read of a user's new rows, and who waits for it."""

    __slots__ = ("after", "limit", "rows", "through", "user_id")

    def __init__(
        self,
        user_id: UUID,
        after: int,
        through: int,
        limit: int,
        rows: asyncio.Future[list[EngagementMetric]],
    ) -> None:
        self.user_id = user_id
        self.after = after
        self.through = through
        self.limit = limit
        self.rows = rows


_SWEEP = "DELETE FROM live_followers WHERE listener NOT IN (SELECT pid FROM pg_stat_activity)"
# Every followed user of this process, with its count of streams, under a new listener.
_FOLLOW_ALL = (
    "INSERT INTO live_followers (user_id, listener, streams)"
    " SELECT unnest(%s::uuid[]), %s, unnest(%s::int[])"
    " ON CONFLICT (user_id, listener) DO UPDATE SET streams = EXCLUDED.streams"
)
# One stream fewer: the row goes with the last.
_UNFOLLOW = (
    "WITH gone AS (DELETE FROM live_followers"
    " WHERE user_id = %(user)s AND listener = %(listener)s AND streams <= 1)"
    " UPDATE live_followers SET streams = streams - 1"
    " WHERE user_id = %(user)s AND listener = %(listener)s AND streams > 1"
)


class PostgresMetricFeed:
    def __init__(self, pool: AsyncConnectionPool, *, check_every: float = CHECK_EVERY) -> None:
        self._pool = pool
        self._check_every = check_every
        # Followed users and how many streams of each this process has open.
        self._followed: dict[UUID, int] = {}
        self._listener: int | None = None
        self._following = asyncio.Lock()
        # Reads asked for while one is under way, made together when it is done.
        self._reads: list[_Read] = []
        self._reading: asyncio.Task[None] | None = None

    async def follow(self, user_id: UUID) -> int:
        async with self._following:
            here = self._followed[user_id] = self._followed.get(user_id, 0) + 1
            if self._listener is None:  # counted once it listens (_listen_as)
                return here
            async with connection(self._pool) as conn:
                cur = await conn.execute(
                    "SELECT engage_live_follow(%s, %s)", [user_id, self._listener]
                )
                row = await cur.fetchone()
            return int(row[0]) if row else here

    async def unfollow(self, user_id: UUID) -> None:
        async with self._following:
            left = self._followed.get(user_id, 0) - 1
            if left > 0:
                self._followed[user_id] = left
            else:
                self._followed.pop(user_id, None)
            if self._listener is not None:
                async with connection(self._pool) as conn:
                    await conn.execute(_UNFOLLOW, {"user": user_id, "listener": self._listener})

    async def _listen_as(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Follow this process's users under the new connection's pid (the old rows
        are swept once their pid is gone)."""
        async with self._following:
            self._listener = conn.info.backend_pid
            await conn.execute(_SWEEP)
            if self._followed:
                await conn.execute(
                    _FOLLOW_ALL,
                    [list(self._followed), self._listener, list(self._followed.values())],
                )

    async def notices(self) -> AsyncIterator[Notice]:
        listened = False
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    str(self._pool.conninfo), **self._connection_kwargs()
                )
            except psycopg.OperationalError as exc:
                failures += 1
                # Once per outage: the retries go on quietly until live.listening.
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "live.listen_failed",
                    extra={"reason": str(exc).strip()[:200], "attempt": failures},
                )
                await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS)) - 1])
                continue
            try:
                async with conn:
                    await conn.execute(f"LISTEN {METRICS_CHANNEL}")
                    await conn.execute(f"LISTEN {ACCESS_CHANNEL}")
                    await self._listen_as(conn)
                    failures = 0
                    log.info("live.listening", extra={"resumed": listened})
                    yield Listening(resumed=listened)
                    listened = True
                    while True:
                        async for notify in conn.notifies(timeout=self._check_every):
                            notice = parse_notice(notify.channel, notify.payload)
                            if notice is not None:
                                yield notice
                        # Idle for a while: a round trip shows the connection is there.
                        await conn.execute(_SWEEP)
            except psycopg.OperationalError as exc:
                log.warning("live.connection_lost", extra={"reason": str(exc).strip()[:200]})
                await asyncio.sleep(RECONNECT_DELAYS[0])

    def _connection_kwargs(self) -> dict[str, Any]:
        """The pool's connection settings (time zone, timeouts, keepalives), in autocommit."""
        given = self._pool.kwargs if isinstance(self._pool.kwargs, dict) else {}
        # Named, so an operator (or a test) can tell it in pg_stat_activity.
        options = f"{given.get('options', '')} -c application_name={LISTENER_NAME}".strip()
        return {**given, "autocommit": True, "options": options}

    async def position(self, user_id: UUID) -> int:
        async with connection(self._pool) as conn:
            cur = await conn.execute("SELECT engage_metric_position(%s)", [user_id])
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def metrics_after(
        self, user_id: UUID, after: int, *, through: int | None, limit: int
    ) -> Sequence[EngagementMetric]:
        if through is not None:  # what a notification said: read with the others
            loop = asyncio.get_running_loop()
            read = _Read(user_id, after, through, limit, loop.create_future())
            self._reads.append(read)
            if self._reading is None or self._reading.done():
                self._reading = loop.create_task(self._read_together())
            return await read.rows
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "SELECT id, metric_type, metric_value, recorded_at FROM engagement_metrics"
                " WHERE user_id = %s AND id > %s AND id <= coalesce(%s, id)"
                " ORDER BY id LIMIT %s",
                [user_id, after, through, limit],
            )
            rows = await cur.fetchall()
        return [stored_metric(user_id, row) for row in rows]

    async def _read_together(self) -> None:
        """Make the reads asked for, all at once, until none is left (those asked for
        meanwhile are the next statement's)."""
        while self._reads:
            reads = [read for read in self._reads if not read.rows.done()]  # not given up
            self._reads = []
            if not reads:
                continue
            try:
                async with connection(self._pool) as conn:
                    cur = await conn.execute(
                        _READ_MANY,
                        [
                            [read.user_id for read in reads],
                            [read.after for read in reads],
                            [read.through for read in reads],
                            [read.limit for read in reads],
                        ],
                    )
                    rows = await cur.fetchall()
            except Exception as exc:  # each reader handles it as its own
                for read in reads:
                    if not read.rows.done():
                        read.rows.set_exception(exc)
                continue
            except BaseException:  # cancelled (the loop is closing): so are the readers
                for read in reads:
                    read.rows.cancel()
                raise
            found: list[list[EngagementMetric]] = [[] for _ in reads]
            for row in rows:
                n = row[0] - 1
                found[n].append(stored_metric(reads[n].user_id, row[1:]))
            for read, metrics in zip(reads, found, strict=True):
                if not read.rows.done():
                    read.rows.set_result(metrics)

    async def count_after(self, user_id: UUID, after: int) -> tuple[int, int]:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "SELECT count(*), coalesce(max(id), %s) FROM engagement_metrics"
                " WHERE user_id = %s AND id > %s",
                [after, user_id, after],
            )
            row = await cur.fetchone()
        return (int(row[0]), int(row[1])) if row else (0, after)

    async def live_grants(self, grants: Collection[GrantId], at: datetime) -> set[GrantId]:
        families = [g.id for g in grants if g.kind == "family"]
        keys = [g.id for g in grants if g.kind == "key"]
        live: set[GrantId] = set()
        async with connection(self._pool) as conn:
            if families:
                cur = await conn.execute(
                    "SELECT DISTINCT family_id FROM sessions WHERE family_id = ANY(%s)"
                    " AND ended_at IS NULL AND expires_at > %s",
                    [families, at],
                )
                live.update(GrantId("family", row[0]) for row in await cur.fetchall())
            if keys:
                cur = await conn.execute(
                    "SELECT id FROM api_keys WHERE id = ANY(%s) AND revoked_at IS NULL"
                    " AND (expires_at IS NULL OR expires_at > %s)",
                    [keys, at],
                )
                live.update(GrantId("key", row[0]) for row in await cur.fetchall())
        return live
