"""A user's metric ids appear in the order their writers commit (what the live stream
builds on), and the triggers notify new metrics and ended access with ids only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import psycopg
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.live import PostgresMetricFeed, parse_notice
from engage_adapters.postgres.metrics import PostgresMetricRepository
from engage_core.model import GrantId, MetricDraft, MetricType, MetricValue, Timestamp
from engage_core.ports import AccessEnded, Listening, MetricsAdded
from support.rows import insert_users

WAIT = 10.0


def draft() -> MetricDraft:
    return MetricDraft(
        metric_type=MetricType("steps"),
        metric_value=MetricValue(1),
        recorded_at=Timestamp(datetime.now(UTC)),
    )


async def test_a_writer_of_the_same_user_waits_for_the_one_in_flight(
    pg_pool: AsyncConnectionPool,
) -> None:
    [user, other] = await insert_users(pg_pool, 2)
    repository = PostgresMetricRepository(pg_pool)
    async with pg_pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO engagement_metrics (user_id, metric_type, metric_value)"
            " SELECT owner, 'steps', 1 FROM engage_lock_metric_writes(%s) AS owner RETURNING id",
            [user],
        )
        row = await cur.fetchone()
        assert row is not None
        in_flight = row[0]
        waiting = asyncio.create_task(repository.add(user, draft()))
        unrelated = await asyncio.wait_for(repository.add(other, draft()), WAIT)
        await asyncio.sleep(0.2)
        assert not waiting.done()  # it has no id yet: it waits for the lock
    later = await asyncio.wait_for(waiting, WAIT)

    assert in_flight < unrelated.id < later.id
    async with pg_pool.connection() as conn:
        await conn.execute("SELECT 1")  # the pool still works


async def test_the_position_waits_for_the_users_writers_and_bounds_what_follows(
    pg_pool: AsyncConnectionPool,
) -> None:
    [user] = await insert_users(pg_pool, 1)
    feed = PostgresMetricFeed(pg_pool)
    repository = PostgresMetricRepository(pg_pool)
    first = await repository.add(user, draft())

    position = await feed.position(user)
    second = await repository.add(user, draft())

    assert first.id <= position < second.id
    assert [m.id for m in await feed.metrics_after(user, position, through=None, limit=10)] == [
        second.id
    ]
    assert await feed.count_after(user, 0) == (2, second.id)


async def test_reads_asked_for_at_once_each_get_their_own_rows(
    pg_pool: AsyncConnectionPool,
) -> None:
    """A burst's reads (one per user, as notifications come) are made together: each
    still gets exactly its user's rows in its own range, up to its own limit."""
    users = await insert_users(pg_pool, 4)
    feed = PostgresMetricFeed(pg_pool)
    repository = PostgresMetricRepository(pg_pool)
    ids = {user: [(await repository.add(user, draft())).id for _ in range(5)] for user in users}
    first, second, third, fourth = users

    reads = await asyncio.wait_for(
        asyncio.gather(
            feed.metrics_after(first, 0, through=ids[first][-1], limit=10),
            feed.metrics_after(second, ids[second][0], through=ids[second][3], limit=10),
            feed.metrics_after(third, 0, through=ids[third][-1], limit=2),
            feed.metrics_after(fourth, ids[fourth][-1], through=ids[fourth][-1], limit=10),
            feed.metrics_after(first, ids[first][2], through=ids[first][-1], limit=10),
        ),
        WAIT,
    )

    assert [[m.id for m in rows] for rows in reads] == [
        ids[first],
        ids[second][1:4],
        ids[third][:2],
        [],
        ids[first][3:],
    ]
    assert {m.user_id for m in reads[1]} == {second}


async def test_inserts_of_followed_users_and_ended_access_notify_ids_only(
    pg_pool: AsyncConnectionPool, pg_url: str
) -> None:
    [user, unwatched] = await insert_users(pg_pool, 2)
    repository = PostgresMetricRepository(pg_pool)
    family, key = uuid4(), uuid4()
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as listener:
        await listener.execute("LISTEN engage_metrics")
        await listener.execute("LISTEN engage_access")
        async with pg_pool.connection() as conn:
            await conn.execute(
                "INSERT INTO live_followers (user_id, listener) VALUES (%s, %s)",
                [user, listener.info.backend_pid],
            )
        await repository.add(unwatched, draft())  # nobody follows them: no notification
        batch = await repository.add_many(user, [draft(), draft(), draft()])
        async with pg_pool.connection() as conn:
            await conn.execute(
                "INSERT INTO sessions (id, user_id, family_id, token, expires_at)"
                " VALUES (%s, %s, %s, 't', %s)",
                [uuid4(), user, family, now + timedelta(days=1)],
            )
            await conn.execute(
                "UPDATE sessions SET ended_at = now(), end_reason = 'rotated' WHERE family_id = %s",
                [family],
            )
            await conn.execute(
                "INSERT INTO sessions (id, user_id, family_id, token, expires_at)"
                " VALUES (%s, %s, %s, 't2', %s)",
                [uuid4(), user, family, now + timedelta(days=1)],
            )
            await conn.execute(
                "UPDATE sessions SET ended_at = now(), end_reason = 'logged out'"
                " WHERE family_id = %s AND ended_at IS NULL",
                [family],
            )
            await conn.execute(
                "INSERT INTO api_keys (id, user_id, name, secret_hash, scopes, created_at)"
                " VALUES (%s, %s, 'k', %s, ARRAY['metrics:read'], now())",
                [key, user, "0" * 64],
            )
            await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", [key])
        notices = []
        async for notify in listener.notifies(timeout=WAIT, stop_after=3):
            notices.append(parse_notice(notify.channel, notify.payload))

    assert batch == 3
    [added, ended_family, revoked] = notices
    assert isinstance(added, MetricsAdded)
    assert (added.user_id, added.count, added.last_id - added.first_id) == (user, 3, 2)
    # The rotation said nothing: a refresh does not end a device's session.
    assert ended_family == AccessEnded(GrantId("family", family))
    assert revoked == AccessEnded(GrantId("key", key))


async def test_followed_users_are_listed_under_the_listening_connection_and_follow_it(
    pg_pool: AsyncConnectionPool,
) -> None:
    [user] = await insert_users(pg_pool, 1)
    feed = PostgresMetricFeed(pg_pool)
    notices = feed.notices()

    async def rows() -> list[tuple[object, ...]]:
        async with pg_pool.connection() as conn:
            cur = await conn.execute("SELECT user_id, listener FROM live_followers")
            return await cur.fetchall()

    try:
        assert await asyncio.wait_for(anext(notices), WAIT) == Listening(resumed=False)
        await feed.follow(user)
        await feed.follow(user)  # a second stream of the same user
        [(followed, first_listener)] = await rows()
        assert followed == user
        async with pg_pool.connection() as conn:
            await conn.execute("SELECT pg_terminate_backend(%s, 5000)", [first_listener])

        assert await asyncio.wait_for(anext(notices), WAIT) == Listening(resumed=True)
        [(_, listener)] = await rows()  # the dead one's row swept, ours under the new pid
        assert listener != first_listener
        await feed.unfollow(user)
        assert len(await rows()) == 1
        await feed.unfollow(user)
        assert await rows() == []
    finally:
        await notices.aclose()  # type: ignore[attr-defined]
