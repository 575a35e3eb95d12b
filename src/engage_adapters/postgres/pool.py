"""The connection pool: one per process, shared by every repository.

It rides out a database outage by itself: a request waits at most
``CONNECTION_WAIT`` for a connection (then ``PoolTimeout``, which the entry
points answer as "database unreachable"), a connection the server has cut is
dropped at checkout, and lost connections are reconnected every second or two
until the database is back. A pool opened with ``answer_within`` (the HTTP
app's) also gives up on a server that holds a connection open but answers
nothing (frozen, or cut off by a network that drops packets): the statement
fails after that long, as an unreachable database does, and its connection is
closed.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

_RV = TypeVar("_RV")
# Every session speaks UTC, so timestamptz values come back in UTC. The server
# checks every second whether the client of a running statement is still there,
# so that a statement its client gave up on (``answer_within``) stops within a
# second, whatever it waits for. (One the server had not started when it froze
# runs when it thaws, and commits if done within that second: README.md.)
_OPTIONS = "-c TimeZone=UTC -c application_name=engage -c client_connection_check_interval=1000"
# How long the HTTP app's statements may go unanswered (``open_pool``): far longer
# than any of its statements takes, well under what a client waits for an answer.
ANSWER_WITHIN = 10.0
# What psycopg raises when a wait's timeout expires (an OperationalError).
_WAIT_TIMEOUT: type[Exception] = psycopg.errors._WaitTimeout
# A worker is one event loop on one core: a handful of connections keep it busy
# (each request holds one for a single statement), more only queue in PostgreSQL.
DEFAULT_POOL_SIZE = 10
# Connections left for everything but the workers: the CLI, backups, psql.
HEADROOM = 10
# How long a request waits for a connection before it is told the database is
# unreachable (a 503): well under the 5 s a client should ever wait for that.
CONNECTION_WAIT = 2.0
# How long a lost connection is retried (after 1 s, then 2 s) before the pool
# gives its slot up and grows again on demand: so a retry is never more than
# 2 s away, where psycopg_pool's default (5 min of doubling delays) would wait
# up to minutes after a long outage.
RECONNECT_FOR = 4.0
# How long /readyz waits for a pooled connection before it asks the server
# directly (the pool may merely be busy), and for the server's answer.
PING_WAIT = 0.25
PING_ANSWER_WITHIN = 2.0
# A TCP connection to a server that vanished without a word (a partition)
# fails within seconds, not at the kernel's retransmission timeout (minutes).
# libpq ignores these on Unix sockets; a setting in the URL wins.
_TCP_FAILFAST = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


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


class AnsweringConnection(psycopg.AsyncConnection[Any]):
    """A connection that gives up on a statement the server leaves unanswered for
    ``answer_within`` seconds (None: waits as long as it takes): it closes itself,
    since what the server does with the statement is unknown from then on, and
    raises ``OperationalError``, what an unreachable database raises."""

    answer_within: float | None = None

    async def wait(  # the same call as psycopg's, with our default timeout
        self,
        gen: PQGen[_RV],
        interval: float = 0.1,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg's own signature
    ) -> _RV:
        limit = (_answer_within.get() or self.answer_within) if timeout is None else timeout
        try:
            return await super().wait(gen, interval=interval, timeout=limit)
        except _WAIT_TIMEOUT:
            if timeout is not None:  # psycopg's own timeout, its own answer
                raise
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"the database did not answer within {limit:g} s"
            ) from None


_answer_within: ContextVar[float | None] = ContextVar("engage_answer_within", default=None)


@contextmanager
def answering_within(seconds: float) -> Iterator[None]:
    """Statements of this task on an ``AnsweringConnection`` fail if unanswered for
    ``seconds``, whatever the pool's ``answer_within``."""
    token = _answer_within.set(seconds)
    try:
        yield
    finally:
        _answer_within.reset(token)


async def open_pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = DEFAULT_POOL_SIZE,
    answer_within: float | None = None,
) -> AsyncConnectionPool:
    """Open a pool and wait until its first connection works (a clear error if not).

    Every connection is in autocommit: the repositories' operations are single
    statements (atomic by themselves), and a BEGIN and a COMMIT around each
    would be two more round trips (their cost: bench/README.md). Work that
    needs several statements to commit together says so with
    ``conn.transaction()`` (bulk loads, the export's server-side cursor).
    Connections go back to the pool as they are, with no reset step, which
    psycopg_pool would run in a background task per return; and the check at
    checkout costs a round trip only for a connection the server has written
    to while it sat idle (see ``_drop_if_cut``). With ``answer_within``, a
    statement unanswered for that long fails (``AnsweringConnection``).
    """
    pool: AsyncConnectionPool
    sweeps: set[asyncio.Task[None]] = set()  # held until done: the loop keeps weak references

    async def check(conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            await _drop_if_cut(conn)
        except psycopg.Error:
            # One cut connection means the server went away: the others idle
            # beside it are as dead, so test them all now, not one request each.
            if not sweeps:
                sweep = asyncio.get_running_loop().create_task(pool.check())
                sweeps.add(sweep)
                sweep.add_done_callback(sweeps.discard)
            raise

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        if isinstance(conn, AnsweringConnection):
            conn.answer_within = answer_within

    pool = AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        connection_class=AnsweringConnection,
        configure=configure,
        kwargs=_connection_kwargs(conninfo),
        open=False,
        timeout=CONNECTION_WAIT,
        check=check,
        reconnect_timeout=RECONNECT_FOR,
        name="engage",
    )
    await pool.open(wait=True, timeout=15.0)
    return pool


def _connection_kwargs(conninfo: str) -> dict[str, Any]:
    given = conninfo_to_dict(conninfo)
    failfast = {name: value for name, value in _TCP_FAILFAST.items() if name not in given}
    return {"options": _OPTIONS, "autocommit": True, **failfast}


async def _drop_if_cut(conn: psycopg.AsyncConnection[Any]) -> None:
    """Raise if the server has closed this idle connection.

    A server that stops or restarts says goodbye (an error, then end of file)
    on every connection it had. An idle connection the server has said
    nothing to is fine without a round trip: one readable socket poll instead
    of an empty query per checkout. One with something to read gets the real
    check, which consumes it or fails.
    """
    if _readable(conn.pgconn.socket):
        await AsyncConnectionPool.check_connection(conn)


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):  # any descriptor number, unlike select()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


async def ping(pool: AsyncConnectionPool) -> None:
    """A round trip to the database; raises at once when it does not answer.

    A pooled connection if one comes within ``PING_WAIT``; else the pool is
    busy or the server gone, and a connection of its own tells which, without
    waiting out the pool's reconnection delays.
    """
    try:
        async with pool.connection(timeout=PING_WAIT) as conn:
            with answering_within(PING_ANSWER_WITHIN):
                await conn.execute("SELECT 1")
            return
    except (PoolTimeout, psycopg.OperationalError):
        if pool.closed or not isinstance(pool.conninfo, str):
            raise
    conninfo = pool.conninfo
    async with await psycopg.AsyncConnection.connect(
        conninfo, **{**_connection_kwargs(conninfo), "connect_timeout": 2}
    ) as conn:
        await conn.execute("SELECT 1")
