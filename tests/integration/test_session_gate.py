"""SessionGate over real connections: a refused check leaves each connection as
able to run the work behind it as before, however often the work had run.

A refused check aborts the pipeline it shares with the work's statement, so the
statement's Parse is skipped; if that was the execution at which psycopg would
have prepared it, psycopg must not believe it prepared.
"""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.transaction import GateClosed, SessionGate, rows

# A check that fails with division_by_zero when its parameter is 0.
_CHECK = "SELECT 1 / %s"
_REFUSED = "22012"
_WORK = "SELECT %s::int + 1"


async def _gated(pool: AsyncConnectionPool, allowed: bool, value: int) -> list[tuple[int, ...]]:
    gate = SessionGate(pool, _CHECK, (1 if allowed else 0,), frozenset({_REFUSED}))
    checked = await gate.run(lambda: rows(pool, _WORK, [value]))
    if isinstance(checked, str):
        raise GateClosed(checked)
    return checked[1]


@pytest.mark.parametrize("refused_at", range(9))
async def test_a_refused_check_never_leaves_the_work_unusable(pg_url: str, refused_at: int) -> None:
    """One connection, so every request meets psycopg's counts of the last; the
    refusal falls on each execution in turn, the sixth (psycopg's default
    threshold for preparing) included."""
    async with AsyncConnectionPool(
        pg_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
    ) as pool:
        answers = []
        for i in range(12):
            try:
                answers.append(await _gated(pool, allowed=i != refused_at, value=i))
            except GateClosed as closed:
                answers.append(str(closed))

    assert answers == [_REFUSED if i == refused_at else [(i + 1,)] for i in range(12)]


async def test_work_run_without_a_gate_and_then_behind_a_refused_one(pg_url: str) -> None:
    """The same statement counted outside any gate first, then refused behind one."""
    async with AsyncConnectionPool(
        pg_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
    ) as pool:
        for i in range(5):
            assert await rows(pool, _WORK, [i]) == [(i + 1,)]
        with pytest.raises(GateClosed):
            await _gated(pool, allowed=False, value=0)
        for i in range(3):
            assert await _gated(pool, allowed=True, value=i) == [(i + 1,)]
            assert await rows(pool, _WORK, [i]) == [(i + 1,)]
