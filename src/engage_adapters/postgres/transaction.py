"""Units of work in PostgreSQL: one pooled connection in a transaction, bound to the task.

``PostgresUnitOfWork.atomic()`` takes a connection from the pool, opens a
transaction on it and binds it to the running task (a ``ContextVar``) for the
block. Every repository gets its connection from ``connection(pool)``: the
bound one inside a block, else one from the pool for a single statement in
autocommit, as before, with no BEGIN or COMMIT round trips. A block inside
another is a savepoint on the same connection, so nothing commits before the
outermost block does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from contextvars import ContextVar
from typing import Any

from attrs import define, field
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

Action = Callable[[], Awaitable[object]]


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
    connection (in autocommit) for as long as the ``async with``."""
    unit = _bound(pool)
    if unit is None:
        return pool.connection()
    return nullcontext(unit.conn)


class PostgresUnitOfWork:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
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
