"""Contract of MetricFeed: what the live stream is told of new metrics and ended
access, and what it reads back, over the fake and PostgreSQL (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest

from engage_core.model import (
    ApiKey,
    ApiKeyScope,
    EngagementMetric,
    GrantId,
    MetricDraft,
    MetricType,
    MetricValue,
    Session,
    Timestamp,
)
from engage_core.ports import AccessEnded, Listening, MetricFeed, MetricsAdded, Notice
from engage_core.testing import FakeClock

if TYPE_CHECKING:
    from conftest import FeedStorage, Subject

WAIT = 10.0  # how long a test waits for a notice that must come (it comes in milliseconds)


def _draft(at: datetime, value: int = 1) -> MetricDraft:
    return MetricDraft(
        metric_type=MetricType("steps"), metric_value=MetricValue(value), recorded_at=Timestamp(at)
    )


def _session(user_id: UUID, at: datetime, *, family_id: UUID | None = None) -> Session:
    session_id = uuid4()
    return Session(
        id=session_id,
        user_id=user_id,
        family_id=family_id or uuid4(),
        token_hash=f"hash-{session_id.hex}",
        created_at=at,
        expires_at=at + timedelta(days=14),
    )


def _key(user_id: UUID, at: datetime, *, expires_at: datetime | None = None) -> ApiKey:
    key_id = uuid4()
    return ApiKey(
        id=key_id,
        user_id=user_id,
        name="a device",
        scopes=frozenset({ApiKeyScope.METRICS_READ}),
        secret_hash=hashlib.sha256(key_id.bytes).hexdigest(),  # 64 hex digits, as an HMAC
        created_at=at,
        expires_at=expires_at,
    )


async def _interleaved(
    storage: FeedStorage, user_id: UUID, other: UUID, at: datetime, count: int
) -> list[EngagementMetric]:
    """``count`` metrics of ``user_id``, each followed by one of ``other``."""
    rows = []
    for n in range(count):
        rows.append(await storage.metrics.add(user_id, _draft(at, n)))
        await storage.metrics.add(other, _draft(at, n))
    return rows


@asynccontextmanager
async def _listening(feed: MetricFeed) -> AsyncIterator[AsyncIterator[Notice]]:
    """The feed's notices, closed (its connection with them) when the block ends."""
    notices = feed.notices()
    try:
        yield notices
    finally:
        await notices.aclose()  # type: ignore[attr-defined]


async def _next(notices: AsyncIterator[Notice]) -> Notice:
    async with asyncio.timeout(WAIT):
        return await anext(notices)


# --- reading back ----------------------------------------------------------------


async def test_the_position_covers_the_users_metrics_so_far_and_none_to_come(
    metric_feed: Subject[FeedStorage], clock: FakeClock
) -> None:
    storage = metric_feed.impl
    ada, bob = await metric_feed.new_user(), await metric_feed.new_user()
    before = await storage.metrics.add(ada, _draft(clock.now()))

    position = await storage.feed.position(ada)
    unwritten = await storage.feed.position(bob)  # no metric of theirs yet
    after = await storage.metrics.add(ada, _draft(clock.now()))
    first_of_bob = await storage.metrics.add(bob, _draft(clock.now()))

    assert before.id <= position < after.id
    assert 0 <= unwritten < first_of_bob.id


async def test_metrics_after_reads_the_users_metrics_above_an_id_ascending(
    metric_feed: Subject[FeedStorage], clock: FakeClock
) -> None:
    storage = metric_feed.impl
    ada, bob = await metric_feed.new_user(), await metric_feed.new_user()
    rows = await _interleaved(storage, ada, bob, clock.now(), 5)
    ids = [m.id for m in rows]
    feed = storage.feed

    assert list(await feed.metrics_after(ada, 0, through=None, limit=100)) == rows
    assert list(await feed.metrics_after(ada, ids[0], through=None, limit=100)) == rows[1:]
    assert list(await feed.metrics_after(ada, ids[0], through=ids[3], limit=100)) == rows[1:4]
    # Through an id that is another user's (between two of ada's): the same rows.
    assert list(await feed.metrics_after(ada, ids[0], through=ids[3] + 1, limit=100)) == rows[1:4]
    assert list(await feed.metrics_after(ada, ids[0], through=None, limit=2)) == rows[1:3]
    assert list(await feed.metrics_after(ada, ids[0], through=ids[3], limit=2)) == rows[1:3]
    assert list(await feed.metrics_after(ada, ids[-1], through=None, limit=100)) == []
    assert list(await feed.metrics_after(uuid4(), 0, through=None, limit=100)) == []


async def test_count_after_counts_the_users_metrics_above_an_id_and_names_the_last(
    metric_feed: Subject[FeedStorage], clock: FakeClock
) -> None:
    storage = metric_feed.impl
    ada, bob = await metric_feed.new_user(), await metric_feed.new_user()
    rows = await _interleaved(storage, ada, bob, clock.now(), 5)
    ids = [m.id for m in rows]
    feed = storage.feed

    assert await feed.count_after(ada, 0) == (5, ids[-1])
    assert await feed.count_after(ada, ids[1]) == (3, ids[-1])
    assert await feed.count_after(ada, ids[-1] - 1) == (1, ids[-1])
    assert await feed.count_after(ada, ids[-1]) == (0, ids[-1])  # none: the id asked about
    assert await feed.count_after(uuid4(), 7) == (0, 7)


async def test_live_grants_are_families_with_a_live_session_and_usable_keys(
    metric_feed: Subject[FeedStorage], clock: FakeClock
) -> None:
    storage, ada = metric_feed.impl, await metric_feed.new_user()
    sessions, keys = storage.sessions, storage.keys
    t0 = clock.now()
    at = t0 + timedelta(hours=1)
    live, refreshed, logged_out = (_session(ada, t0) for _ in range(3))
    expiring = _session(ada, at - timedelta(days=14))  # expires at ``at``
    for session in (live, refreshed, logged_out, expiring):
        await sessions.add(session)
    assert await sessions.rotate(refreshed.id, _session(ada, t0, family_id=refreshed.family_id), t0)
    assert await sessions.end_family(logged_out.family_id, t0, "logged out") == [logged_out.id]
    usable, revoked = _key(ada, t0), _key(ada, t0)
    expired = _key(ada, t0, expires_at=at)
    lasting = _key(ada, t0, expires_at=at + timedelta(seconds=1))
    for key in (usable, revoked, expired, lasting):
        await keys.add(key)
    assert await keys.revoke(revoked.id, t0) is not None

    def family(session: Session) -> GrantId:
        return GrantId("family", session.family_id)

    def key(api_key: ApiKey) -> GrantId:
        return GrantId("key", api_key.id)

    asked = [
        *(family(s) for s in (live, refreshed, logged_out, expiring)),
        GrantId("family", uuid4()),
        *(key(k) for k in (usable, revoked, expired, lasting)),
        GrantId("key", uuid4()),
        GrantId("key", live.family_id),  # a family's id is no key's
    ]

    assert await storage.feed.live_grants(asked, at) == {
        family(live),
        family(refreshed),
        key(usable),
        key(lasting),
    }
    assert await storage.feed.live_grants(asked, at + timedelta(days=30)) == {key(usable)}
    assert await storage.feed.live_grants([], at) == set()


# --- notices ---------------------------------------------------------------------


async def test_notices_start_with_listening(metric_feed: Subject[FeedStorage]) -> None:
    async with _listening(metric_feed.impl.feed) as notices:
        assert await _next(notices) == Listening(resumed=False)


async def test_a_followed_users_new_metrics_are_told_by_id(
    metric_feed: Subject[FeedStorage], clock: FakeClock
) -> None:
    storage, ada = metric_feed.impl, await metric_feed.new_user()
    async with _listening(storage.feed) as notices:
        assert await _next(notices) == Listening(resumed=False)
        await storage.feed.follow(ada)

        one = await storage.metrics.add(ada, _draft(clock.now()))
        assert await _next(notices) == MetricsAdded(ada, one.id, one.id, 1)

        assert await storage.metrics.add_many(ada, [_draft(clock.now(), n) for n in range(3)]) == 3
        batch = [m.id for m in await storage.feed.metrics_after(ada, one.id, through=None, limit=9)]
        told: list[MetricsAdded] = []
        while not told or told[-1].last_id < batch[-1]:  # one notice, or one per metric
            notice = await _next(notices)
            assert isinstance(notice, MetricsAdded)
            told.append(notice)

    assert all(n.user_id == ada for n in told)
    assert sum(n.count for n in told) == len(batch) == 3
    assert (told[0].first_id, told[-1].last_id) == (batch[0], batch[-1])
    assert all(any(n.first_id <= i <= n.last_id for n in told) for i in batch)


async def test_a_user_is_followed_while_one_of_their_follows_remains(
    metric_feed: Subject[FeedStorage], clock: FakeClock
) -> None:
    storage, ada = metric_feed.impl, await metric_feed.new_user()
    async with _listening(storage.feed) as notices:
        assert await _next(notices) == Listening(resumed=False)
        await storage.feed.follow(ada)
        await storage.feed.follow(ada)  # a second stream of the same user
        await storage.feed.unfollow(ada)  # one of them closes

        metric = await storage.metrics.add(ada, _draft(clock.now()))

        assert await _next(notices) == MetricsAdded(ada, metric.id, metric.id, 1)


async def test_a_user_followed_before_the_feed_listens_is_followed_once_it_does(
    metric_feed: Subject[FeedStorage], clock: FakeClock
) -> None:
    storage, ada = metric_feed.impl, await metric_feed.new_user()
    await storage.feed.follow(ada)
    async with _listening(storage.feed) as notices:
        assert await _next(notices) == Listening(resumed=False)

        metric = await storage.metrics.add(ada, _draft(clock.now()))

        assert await _next(notices) == MetricsAdded(ada, metric.id, metric.id, 1)


async def test_a_device_that_logs_out_and_a_revoked_key_are_told_a_refresh_is_not(
    metric_feed: Subject[FeedStorage], clock: FakeClock
) -> None:
    storage, ada = metric_feed.impl, await metric_feed.new_user()
    t0 = clock.now()
    session, key = _session(ada, t0), _key(ada, t0)
    await storage.sessions.add(session)
    await storage.keys.add(key)
    async with _listening(storage.feed) as notices:
        assert await _next(notices) == Listening(resumed=False)

        refreshed = _session(ada, t0, family_id=session.family_id)
        assert await storage.sessions.rotate(session.id, refreshed, t0)  # says nothing
        assert await storage.sessions.end_family(session.family_id, t0, "logged out")
        assert await storage.keys.revoke(key.id, t0) is not None
        told = [await _next(notices), await _next(notices)]

    assert told == [
        AccessEnded(GrantId("family", session.family_id)),
        AccessEnded(GrantId("key", key.id)),
    ]


async def test_deleting_a_user_ends_the_access_of_their_devices_and_keys(
    metric_feed: Subject[FeedStorage], clock: FakeClock
) -> None:
    storage = metric_feed.impl
    ada, bob = await metric_feed.new_user(), await metric_feed.new_user()
    t0 = clock.now()
    device, ended = _session(ada, t0), _session(ada, t0)
    key, revoked, bobs_key = _key(ada, t0), _key(ada, t0), _key(bob, t0)
    for session in (device, ended):
        await storage.sessions.add(session)
    for api_key in (key, revoked, bobs_key):
        await storage.keys.add(api_key)
    await storage.sessions.end_family(ended.family_id, t0, "logged out")
    await storage.keys.revoke(revoked.id, t0)
    async with _listening(storage.feed) as notices:
        assert await _next(notices) == Listening(resumed=False)

        assert await storage.users.delete(ada)
        # Then something else, told after whatever the deletion told.
        assert await storage.keys.revoke(bobs_key.id, t0) is not None
        told = [await _next(notices) for _ in range(3)]

    # Those already ended are not told again: bob's key comes third.
    assert set(told[:2]) == {
        AccessEnded(GrantId("family", device.family_id)),
        AccessEnded(GrantId("key", key.id)),
    }
    assert told[2] == AccessEnded(GrantId("key", bobs_key.id))


# --- counting a user's streams ------------------------------------------------------


async def test_a_follow_answers_the_users_open_streams_this_one_included(
    metric_feed: Subject[FeedStorage],
) -> None:
    storage = metric_feed.impl
    ada, bob = await metric_feed.new_user(), await metric_feed.new_user()
    async with _listening(storage.feed) as notices:
        assert await _next(notices) == Listening(resumed=False)

        assert [await storage.feed.follow(ada) for _ in range(3)] == [1, 2, 3]
        assert await storage.feed.follow(bob) == 1  # each user's own count
        await storage.feed.unfollow(ada)
        assert await storage.feed.follow(ada) == 3  # the one that closed no longer counts
        for _ in range(3):
            await storage.feed.unfollow(ada)
        assert await storage.feed.follow(ada) == 1


async def test_the_streams_of_another_process_on_the_same_storage_count_too(
    metric_feed: Subject[FeedStorage],
) -> None:
    storage, ada = metric_feed.impl, await metric_feed.new_user()
    if storage.sibling is None:
        pytest.skip("the storage is only this process's: no other process shares it")
    other = storage.sibling()
    async with _listening(storage.feed) as here, _listening(other) as there:
        assert await _next(here) == Listening(resumed=False)
        assert await _next(there) == Listening(resumed=False)

        assert await storage.feed.follow(ada) == 1
        assert await other.follow(ada) == 2
        assert await other.follow(ada) == 3
        await other.unfollow(ada)
        assert await storage.feed.follow(ada) == 3


async def test_simultaneous_follows_of_one_user_answer_different_totals(
    metric_feed: Subject[FeedStorage],
) -> None:
    """Exact under concurrency, across processes: no two follows see the same total."""
    storage, ada = metric_feed.impl, await metric_feed.new_user()
    feeds = [storage.feed] if storage.sibling is None else [storage.feed, storage.sibling()]
    async with contextlib.AsyncExitStack() as stack:
        for feed in feeds:
            notices = await stack.enter_async_context(_listening(feed))
            assert await _next(notices) == Listening(resumed=False)

        totals = await asyncio.gather(*(feeds[n % len(feeds)].follow(ada) for n in range(12)))

    assert sorted(totals) == list(range(1, 13))


async def test_the_streams_of_a_process_whose_listener_is_gone_stop_counting(
    metric_feed: Subject[FeedStorage],
) -> None:
    storage, ada = metric_feed.impl, await metric_feed.new_user()
    if storage.sibling is None:
        pytest.skip("the storage is only this process's: no other process shares it")
    crashed = storage.sibling()
    async with _listening(storage.feed) as here:
        assert await _next(here) == Listening(resumed=False)
        async with _listening(crashed) as there:
            assert await _next(there) == Listening(resumed=False)
            await crashed.follow(ada)
            await crashed.follow(ada)
            assert await storage.feed.follow(ada) == 3
            await storage.feed.unfollow(ada)
        # Its listening connection is closed (the process died, not having unfollowed):
        # once the server has let the connection go, its two streams no longer count.
        async with asyncio.timeout(WAIT):
            while (total := await storage.feed.follow(ada)) != 1:
                assert total == 3
                await storage.feed.unfollow(ada)
                await asyncio.sleep(0.05)
