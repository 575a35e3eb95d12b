"""Units of work in PostgreSQL: one pooled connection in a transaction, bound to the task.

``PostgresUnitOfWork.atomic()`` takes a connection from the pool, opens a
transaction on it and binds it to the running task (a ``ContextVar``) for the
block. Every repository gets its connection from ``connection(pool)``: the
bound one inside a block, else one from the pool for a single statement in
autocommit, as before, with no BEGIN or COMMIT round trips. A block inside
another is a savepoint on the same connection, so nothing commits before the
outermost block does.

``SessionGate`` runs work behind a check that must pass for it (the session or
the API key behind an authenticated request): ``rows(pool, ...)`` (or
``rowcount``) sends the work's first statement in one pipeline with the check,
ended by one Sync, so both are one round trip; as the two form one implicit
transaction, a failing check makes PostgreSQL skip the statement and keep
nothing of it. Any other statement the work makes waits for the check's answer
first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from contextvars import ContextVar
from typing import Any, TypeVar

import psycopg
from attrs import define, field
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

Action = Callable[[], Awaitable[object]]
_T = TypeVar("_T")
# The statements ``rows`` and ``rowcount`` run are prepared on their first
# execution on a connection, not on their sixth (psycopg's default). A statement
# psycopg has counted and then prepares inside a pipeline is remembered as
# prepared even when the pipeline was aborted before its Parse (psycopg 3.3:
# that path is never validated), so the next use fails with "prepared statement
# does not exist"; and a gate's refused check aborts exactly such a pipeline.
# Prepared from the start, a statement skipped with its Parse is forgotten too.
_PREPARE_AT_ONCE = True
# A statement's text, as repositories write them.
Statement = str | sql.SQL | sql.Composed


@define
class _Unit:
    """One block of a unit of work in progress: its pool, its connection, and
    what to do once the outermost block commits."""

    pool: AsyncConnectionPool
    conn: AsyncConnection[Any]
    after_commit: list[Action] = field(factory=list)
    # False once the block has ended: a task it spawned falls back to the pool.
    open: bool = True


_current: ContextVar[_Unit | None] = ContextVar("engage_postgres_unit", default=None)


def _bound(pool: AsyncConnectionPool) -> _Unit | None:
    unit = _current.get()
    return unit if unit is not None and unit.open and unit.pool is pool else None


def connection(pool: AsyncConnectionPool) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
    """The connection of this task's unit of work on ``pool``, or else a pooled
    connection (in autocommit) for as long as the ``async with``; once the task's
    ``SessionGate`` (if any) has let it through."""
    unit = _bound(pool)
    held = pool.connection() if unit is None else nullcontext(unit.conn)
    gate = _pending_gate(pool)
    if gate is None:
        return held
    return _through(gate, held)


async def rows(pool: AsyncConnectionPool, query: Statement, params: Any) -> list[tuple[Any, ...]]:
    """The rows of one statement, run as ``connection`` would; with the task's
    pending ``SessionGate`` check when there is one, in the same round trip."""
    return await _run(pool, query, params, _fetchall)


async def rowcount(pool: AsyncConnectionPool, query: Statement, params: Any) -> int:
    """How many rows one statement wrote, run as ``rows`` runs it: with the task's
    pending ``SessionGate`` check in the same round trip."""
    return await _run(pool, query, params, _rowcount)


async def _fetchall(cur: psycopg.AsyncCursor[Any]) -> list[tuple[Any, ...]]:
    return await cur.fetchall()


async def _rowcount(cur: psycopg.AsyncCursor[Any]) -> int:
    return cur.rowcount


async def _run(
    pool: AsyncConnectionPool,
    query: Statement,
    params: Any,
    answer: Callable[[psycopg.AsyncCursor[Any]], Awaitable[_T]],
) -> _T:
    gate = _pending_gate(pool)
    if gate is not None and not gate.decided and _bound(pool) is None:
        return await gate.run_with(query, params, answer)
    async with connection(pool) as conn:
        return await answer(await conn.execute(query, params, prepare=_PREPARE_AT_ONCE))


class GateClosed(Exception):
    """The gate's check failed: the work behind it may not go on."""


@define
class SessionGate:
    """A check (one statement that fails with one of ``refusals`` when the work may
    not run) and the work behind it, bound to the task by ``run`` (or ``with gate.bound()``).

    The check goes out with the work's first statement through ``rows`` (or ``rowcount``), or on its
    own before any other statement (``connection``, ``atomic``) or, the work having
    made none, at ``settle``. ``passed`` is its row once it passed; ``refused`` the
    SQLSTATE it failed with, ``refused_detail`` its DETAIL as a number (0 without
    one). ``rolled_back``: the check passed but the work's statement sent with it
    failed, which rolled back whatever the check wrote."""

    pool: AsyncConnectionPool
    check: Statement
    params: Sequence[Any]
    refusals: frozenset[str]
    passed: tuple[Any, ...] | None = None
    refused: str | None = None
    refused_detail: float = 0.0
    rolled_back: bool = False
    # Why the check could not be answered (the database unreachable): raised by
    # ``settle`` too, rather than waiting for the database a second time.
    failure: psycopg.Error | None = None
    open: bool = True

    @property
    def decided(self) -> bool:
        return self.passed is not None or self.refused is not None

    @contextmanager
    def bound(self) -> Iterator[None]:
        token = _gate.set(self)
        try:
            yield
        finally:
            self.open = False
            _gate.reset(token)

    async def run(self, work: Callable[[], Awaitable[_T]]) -> tuple[tuple[Any, ...], _T] | str:
        """``work`` behind the check, bound to the task: the check's row and the work's
        result once the check passed; the SQLSTATE it refused with otherwise (what the
        work returned or raised is then dropped, and nothing it wrote behind the check
        is kept). What the work raised, once the check passed (or could not be made)."""
        try:
            with self.bound():
                result = await work()
        except Exception:
            await self.settle()
            if self.refused is None:
                raise
        else:
            await self.settle()
        if self.refused is not None:
            return self.refused
        assert self.passed is not None
        return self.passed, result

    async def settle(self) -> None:
        """Run the check on its own unless it has been answered already."""
        if self.decided:
            return
        if self.failure is not None:
            raise self.failure
        try:
            # A connection of its own: a refusal must not abort a unit of work's
            # transaction, and a check of liveness needs none.
            async with self.pool.connection() as conn:
                cur = await conn.execute(self.check, self.params)
                self._passed(await cur.fetchone())
        except psycopg.Error as exc:
            if not self._refused_by(exc):
                raise

    async def let_through(self) -> None:
        """Return once the check passed; ``GateClosed`` if it failed."""
        await self.settle()
        if self.refused is not None:
            raise GateClosed(self.refused)

    async def run_with(
        self,
        query: Statement,
        params: Any,
        answer: Callable[[psycopg.AsyncCursor[Any]], Awaitable[_T]],
    ) -> _T:
        """The check, then ``query``, in one pipeline ended by one Sync (one round
        trip); ``answer`` of the query's cursor."""
        check = None
        try:
            async with self.pool.connection() as conn:
                check, work = conn.cursor(), conn.cursor()
                async with conn.pipeline():
                    await check.execute(self.check, self.params)
                    await work.execute(query, params, prepare=_PREPARE_AT_ONCE)
                self._passed(await check.fetchone())
                return await answer(work)
        except psycopg.Error as exc:
            if check is not None and check.pgresult is not None:
                self._passed(await check.fetchone())  # the check passed, the statement failed
                self.rolled_back = True
            elif not self._refused_by(exc):
                self.failure = exc
            raise

    def _passed(self, row: tuple[Any, ...] | None) -> None:
        if row is None:  # a check that passes always gives its row
            raise psycopg.ProgrammingError("the gate's check returned no row")
        if self.refused is None:  # a refusal is final
            self.passed = row

    def _refused_by(self, exc: psycopg.Error) -> bool:
        if exc.sqlstate in self.refusals:
            self.refused = exc.sqlstate
            self.refused_detail = _number(exc.diag.message_detail)
            self.passed = None
            return True
        return False


def _number(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


_gate: ContextVar[SessionGate | None] = ContextVar("engage_postgres_gate", default=None)


def _pending_gate(pool: AsyncConnectionPool) -> SessionGate | None:
    gate = _gate.get()
    if gate is None or not gate.open or gate.pool is not pool or gate.passed is not None:
        return None
    return gate


@asynccontextmanager
async def _through(
    gate: SessionGate, held: AbstractAsyncContextManager[AsyncConnection[Any]]
) -> AsyncIterator[AsyncConnection[Any]]:
    await gate.let_through()
    async with held as conn:
        yield conn


class PostgresUnitOfWork:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        gate = _pending_gate(self._pool)
        if gate is not None:  # nothing commits before the task's check has passed
            await gate.let_through()
        outer = _bound(self._pool)
        if outer is not None:
            async with outer.conn.transaction():  # a savepoint
                inner = _Unit(self._pool, outer.conn)
                with _binding(inner):
                    yield
            outer.after_commit.extend(inner.after_commit)
            return
        async with self._pool.connection() as conn, conn.transaction():
            unit = _Unit(self._pool, conn)
            with _binding(unit):
                yield
        # Committed, and the connection is back in the pool.
        for action in unit.after_commit:
            await action()

    async def after_commit(self, action: Action) -> None:
        unit = _bound(self._pool)
        if unit is None:
            await action()
        else:
            unit.after_commit.append(action)


@contextmanager
def _binding(unit: _Unit) -> Iterator[None]:
    token = _current.set(unit)
    try:
        yield
    finally:
        unit.open = False
        _current.reset(token)
