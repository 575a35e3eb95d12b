"""The rollups stay exact without a foreign key of their own (migration 0002).

metric_rollups has no foreign key to users: its slots are kept by the triggers
on engagement_metrics alone. These tests check the two paths that matter: the
sorted aggregation of a large, unordered insert (new slots and slots that
already exist), and a user's deletion, which must take every slot of theirs
with it and leave every other user's slots, shared or not, exact.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from support.rows import insert_users

T0 = datetime(2025, 6, 1, tzinfo=UTC)
TYPES = ("views", "clicks", "a.b:c-d")

# The rollups as the triggers keep them, and as computed again from raw rows.
STORED = "SELECT user_id, metric_type, bucket_start, count, sum, min, max FROM metric_rollups"
FROM_RAW = """
SELECT user_id, metric_type, engage_rollup_slot(recorded_at), count(*),
       sum(metric_value), min(metric_value), max(metric_value)
  FROM engagement_metrics GROUP BY 1, 2, 3
"""


async def _users(pool: AsyncConnectionPool, count: int) -> list[uuid.UUID]:
    return await insert_users(pool, count)


async def _insert(
    pool: AsyncConnectionPool, rows: list[tuple[uuid.UUID, str, int, datetime]]
) -> None:
    """One INSERT statement for all ``rows``, in the order given."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO engagement_metrics (user_id, metric_type, metric_value, recorded_at)"
            " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::numeric[], %s::timestamptz[])",
            [list(column) for column in zip(*rows, strict=True)],
        )


def _rows(
    users: list[uuid.UUID], count: int, seed: int
) -> list[tuple[uuid.UUID, str, int, datetime]]:
    rng = random.Random(seed)
    return [
        (
            rng.choice(users),
            rng.choice(TYPES),
            rng.randrange(-500, 500),
            T0 + timedelta(minutes=rng.randrange(0, 24 * 60)),
        )
        for _ in range(count)
    ]


async def _agree(pool: AsyncConnectionPool) -> set[tuple[object, ...]]:
    async with pool.connection() as conn:
        stored = set(await (await conn.execute(STORED)).fetchall())
        recomputed = set(await (await conn.execute(FROM_RAW)).fetchall())
    assert stored == recomputed
    return stored


async def test_a_large_unordered_insert_and_one_into_the_same_slots_roll_up_exactly(
    pg_pool: AsyncConnectionPool,
) -> None:
    users = await _users(pg_pool, 5)
    await _insert(pg_pool, _rows(users, 5_000, seed=1))  # many rows per slot, shuffled
    first = await _agree(pg_pool)
    assert len(first) < 5_000
    await _insert(pg_pool, _rows(users, 5_000, seed=2))  # mostly into existing slots
    assert sum(slot[3] for slot in await _agree(pg_pool)) == 10_000  # type: ignore[misc]


async def test_deleting_a_user_removes_their_slots_and_keeps_the_others_exact(
    pg_pool: AsyncConnectionPool,
) -> None:
    gone, kept, other = await _users(pg_pool, 3)
    # The same slots (type and time) for all three users, plus slots of their own.
    shared = _rows([gone], 2_000, seed=3)
    await _insert(
        pg_pool,
        [(user, *row[1:]) for row in shared for user in (gone, kept, other)]
        + _rows([gone, kept], 1_000, seed=4),
    )
    await _agree(pg_pool)
    async with pg_pool.connection() as conn:
        await conn.execute("DELETE FROM users WHERE id = %s", [gone])
    left = await _agree(pg_pool)
    assert {slot[0] for slot in left} == {kept, other}
    async with pg_pool.connection() as conn:
        orphans = await (
            await conn.execute(
                "SELECT count(*) FROM metric_rollups r"
                " WHERE NOT EXISTS (SELECT FROM users u WHERE u.id = r.user_id)"
            )
        ).fetchone()
    assert orphans == (0,)


async def test_emptying_users_with_truncate_cascade_empties_the_rollups(
    pg_pool: AsyncConnectionPool,
) -> None:
    users = await _users(pg_pool, 2)
    await _insert(pg_pool, _rows(users, 100, seed=5))
    async with pg_pool.connection() as conn:
        await conn.execute("TRUNCATE users CASCADE")
        row = await (await conn.execute("SELECT count(*) FROM metric_rollups")).fetchone()
    assert row == (0,)


async def test_new_spans_overlapping_spans_and_new_spans_again_roll_up_exactly(
    pg_pool: AsyncConnectionPool,
) -> None:
    # Slots of a new time span are written with a plain INSERT, slots of a span
    # that already has some with the upsert (migration 0003): the same result.
    users = await _users(pg_pool, 3)
    await _insert(pg_pool, _rows(users, 2_000, seed=6))
    await _insert(pg_pool, _rows(users[:2], 2_000, seed=7))  # the same span: upsert
    later = [(u, t, v, at + timedelta(days=3)) for u, t, v, at in _rows(users, 2_000, seed=8)]
    await _insert(pg_pool, later)  # a span no user has slots in yet: plain insert
    assert sum(slot[3] for slot in await _agree(pg_pool)) == 6_000  # type: ignore[misc]


async def test_a_slot_made_by_a_concurrent_transaction_is_added_to_not_lost(
    pg_pool: AsyncConnectionPool,
) -> None:
    # The second writer does not see the first one's uncommitted slot, so it
    # tries the plain INSERT, waits for the first to commit, fails on the key
    # and falls back to the upsert: every metric is counted in the one slot.
    # (Two rows: a one-row insert takes the upsert at once, migration 0010.)
    (user,) = await _users(pg_pool, 1)
    row = [(user, "views", 1, T0), (user, "views", 3, T0 + timedelta(minutes=2))]
    async with pg_pool.connection() as first:
        await first.execute("BEGIN")
        await first.execute(
            "INSERT INTO engagement_metrics (user_id, metric_type, metric_value, recorded_at)"
            " VALUES (%s, 'views', 2, %s)",
            [user, T0 + timedelta(minutes=1)],
        )
        second = asyncio.create_task(_insert(pg_pool, row))
        # Watched from another connection: within first's transaction,
        # pg_stat_activity would answer from one snapshot.
        async with pg_pool.connection() as watcher:
            for _ in range(500):  # until the second writer waits for the first
                waiting = await (
                    await watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                ).fetchone()
                if waiting and waiting[0]:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the second writer never waited for the first")
        await first.execute("COMMIT")
    await second
    assert [slot[3:] for slot in await _agree(pg_pool)] == [(3, 6, 1, 3)]
