"""A unit of work over the in-memory repositories: all or nothing, by copy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Protocol

from attrs import define, field

__all__ = ["InMemoryUnitOfWork"]


class _Restorable(Protocol):
    def checkpoint(self) -> Callable[[], None]:
        """A function that puts the store's rows back as they are now."""
        ...


@define
class _Unit:
    owner: InMemoryUnitOfWork
    restore: list[Callable[[], None]]
    after_commit: list[Callable[[], Awaitable[object]]] = field(factory=list)
    open: bool = True


_current_unit: ContextVar[_Unit | None] = ContextVar("engage_memory_unit", default=None)


class InMemoryUnitOfWork:
    """Units of work over the given fakes: a block copies their rows on entry and
    puts the copy back if it fails. Units run one at a time (a lock), but other
    tasks' single operations do not wait: they see a unit's writes before it
    commits, and a rollback undoes what they wrote meanwhile. Tests that need
    isolation between tasks run over PostgreSQL."""

    def __init__(self, *stores: _Restorable) -> None:
        self._stores = stores
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        outer = self._bound()
        if outer is not None:
            with self._block() as inner:
                yield
            outer.after_commit.extend(inner.after_commit)
            return
        async with self._lock:
            with self._block() as unit:
                yield
        for action in unit.after_commit:
            await action()

    async def after_commit(self, action: Callable[[], Awaitable[object]]) -> None:
        unit = self._bound()
        if unit is None:
            await action()
        else:
            unit.after_commit.append(action)

    def _bound(self) -> _Unit | None:
        unit = _current_unit.get()
        return unit if unit is not None and unit.open and unit.owner is self else None

    @contextmanager
    def _block(self) -> Iterator[_Unit]:
        unit = _Unit(self, [store.checkpoint() for store in self._stores])
        token = _current_unit.set(unit)
        try:
            yield unit
        except BaseException:
            for restore in unit.restore:
                restore()
            raise
        finally:
            unit.open = False
            _current_unit.reset(token)
