"""Dashboard caching: first pages and summaries cached per user and query, and
fresh after any write by that user (versions, not TTLs).

Two ``MetricsService``s over one cache play two processes sharing Redis.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engage_adapters.dashboard_codec import JsonDashboardCodec
from engage_core import MetricsService, testing
from engage_core.services.backfill import BackfillService, RawRow
from engage_core.services.dashboard_cache import (
    ENTRY_TTL,
    CachedMetricRepository,
    DashboardCache,
    InvalidatingBulkStore,
    Lookup,
)


class ForgetfulCache(testing.InMemoryCache):
    """A cache that is down: it answers nothing and keeps nothing."""

    async def get(self, key):
        return None

    async def set(self, key, value, *, ttl, only_if_absent=False):
        return False


@pytest.fixture
def seen():
    return []


@pytest.fixture
def dashboards(cache, seen):
    return DashboardCache(
        cache, JsonDashboardCodec(), observers=[lambda kind, outcome: seen.append((kind, outcome))]
    )


@pytest.fixture
def cached(metric_repository, dashboards, clock, cursors):
    """The metrics use cases of one process, dashboards cached."""
    repository = CachedMetricRepository(metric_repository, dashboards)
    return MetricsService(metrics=repository, clock=clock, cursors=cursors)


@pytest.fixture
def other_process(metric_repository, cache, clock, cursors):
    """The same use cases in another process sharing the cache."""
    repository = CachedMetricRepository(
        metric_repository, DashboardCache(cache, JsonDashboardCodec())
    )
    return MetricsService(metrics=repository, clock=clock, cursors=cursors)


@pytest.fixture
def earlier(clock):
    return clock.now() - timedelta(hours=2)


async def test_a_repeated_first_page_is_served_from_the_cache(cached, alice, earlier, seen):
    await cached.record(alice.id, metric_type="views", metric_value=1, recorded_at=earlier)

    first = await cached.list(alice.id)
    again = await cached.list(alice.id)

    assert again == first
    assert seen == [("page", Lookup.MISS), ("page", Lookup.HIT)]


async def test_a_repeated_summary_is_served_from_the_cache(cached, alice, earlier, seen):
    await cached.record(alice.id, metric_type="views", metric_value="1.50", recorded_at=earlier)

    first = await cached.summary(alice.id, bucket="hour", tz="America/New_York")
    again = await cached.summary(alice.id, bucket="hour", tz="America/New_York")

    assert again == first
    start = again.series[0].points[0].start
    assert start.tzinfo == first.series[0].points[0].start.tzinfo  # the query's zone again
    assert start.isoformat() == first.series[0].points[0].start.isoformat()
    assert again.series[0].points[0].sum == Decimal("1.5")
    assert seen == [("summary", Lookup.MISS), ("summary", Lookup.HIT)]


async def test_a_write_makes_the_next_reads_fresh_in_every_process(
    cached, other_process, alice, earlier
):
    await cached.record(alice.id, metric_type="views", metric_value=1, recorded_at=earlier)
    await other_process.list(alice.id)
    await other_process.summary(alice.id)

    await cached.record(alice.id, metric_type="views", metric_value=2, recorded_at=earlier)

    assert len((await other_process.list(alice.id)).items) == 2
    assert (await other_process.summary(alice.id)).series[0].points[0].sum == 3


async def test_a_batch_makes_the_next_reads_fresh(cached, alice, earlier):
    await cached.list(alice.id)
    await cached.summary(alice.id)

    await cached.record_batch(
        alice.id, [{"metric_type": "views", "metric_value": 4, "recorded_at": earlier}]
    )

    assert len((await cached.list(alice.id)).items) == 1
    assert (await cached.summary(alice.id)).series[0].points[0].count == 1


async def test_each_query_is_cached_on_its_own(cached, alice, earlier):
    for kind in ("views", "clicks"):
        await cached.record(alice.id, metric_type=kind, metric_value=1, recorded_at=earlier)
    everything = await cached.list(alice.id)

    views = await cached.list(alice.id, metric_type="views")
    one = await cached.list(alice.id, limit=1)
    by_week = await cached.summary(alice.id, bucket="week")
    by_day_in_tokyo = await cached.summary(alice.id, tz="Asia/Tokyo")

    assert len(everything.items) == 2
    assert [m.metric_type.value for m in views.items] == ["views"]
    assert len(one.items) == 1
    assert one.next_cursor is not None
    assert by_week.bucket == "week"
    assert by_day_in_tokyo.tz.key == "Asia/Tokyo"


async def test_later_pages_are_not_cached(cached, alice, earlier, seen):
    for value in range(3):
        await cached.record(alice.id, metric_type="views", metric_value=value, recorded_at=earlier)
    first = await cached.list(alice.id, limit=1)
    seen.clear()

    await cached.list(alice.id, limit=1, cursor=first.next_cursor)

    assert seen == []


async def test_one_users_cached_dashboard_is_never_served_to_another(cached, alice, bob, earlier):
    await cached.record(alice.id, metric_type="views", metric_value=9, recorded_at=earlier)
    await cached.list(alice.id)
    await cached.summary(alice.id)

    assert (await cached.list(bob.id)).items == ()
    assert (await cached.summary(bob.id)).series == ()


async def test_an_entry_that_names_another_user_or_query_is_not_served(
    cached, cache, alice, bob, earlier, seen
):
    await cached.record(bob.id, metric_type="views", metric_value=9, recorded_at=earlier)
    await cached.list(alice.id)
    await cached.list(bob.id)
    entries = {k: v for k, (v, _) in cache._items.items() if k.startswith("dashboard:")}
    (alice_key,) = [k for k in entries if str(alice.id) in k]
    (bob_key,) = [k for k in entries if str(bob.id) in k]
    await cache.set(alice_key, entries[bob_key], ttl=60)  # as if keys collided
    seen.clear()

    assert (await cached.list(alice.id)).items == ()
    assert seen == [("page", Lookup.MISS)]


async def test_without_a_working_cache_reads_go_to_the_repository(
    metric_repository, clock, cursors, alice, earlier
):
    seen = []
    dashboards = DashboardCache(
        ForgetfulCache(), JsonDashboardCodec(), observers=[lambda *o: seen.append(o)]
    )
    service = MetricsService(
        metrics=CachedMetricRepository(metric_repository, dashboards), clock=clock, cursors=cursors
    )
    await service.record(alice.id, metric_type="views", metric_value=1, recorded_at=earlier)

    assert len((await service.list(alice.id)).items) == 1
    await service.record(alice.id, metric_type="views", metric_value=1, recorded_at=earlier)
    assert len((await service.list(alice.id)).items) == 2
    assert seen == [("page", Lookup.BYPASS)] * 2


async def test_cached_entries_expire_to_bound_memory(cached, alice, clock, seen):
    await cached.list(alice.id)

    clock.advance(ENTRY_TTL + 1)
    await cached.list(alice.id)

    assert seen == [("page", Lookup.MISS), ("page", Lookup.MISS)]


async def test_a_bulk_load_makes_every_users_next_reads_fresh(
    users, metric_repository, dashboards, cached, alice, bob, clock
):
    await cached.summary(alice.id)
    await cached.summary(bob.id)
    store = InvalidatingBulkStore(
        testing.InMemoryBulkMetricStore(users, metric_repository), dashboards
    )
    moment = datetime(2025, 6, 1, tzinfo=UTC).isoformat()
    rows = [
        RawRow(
            line=n + 2, email=who.email, metric_type="views", metric_value="1", recorded_at=moment
        )
        for n, who in enumerate((alice, bob))
    ]

    report = await BackfillService(store, clock).backfill(rows)

    assert report.inserted == 2
    for who in (alice, bob):
        assert (await cached.summary(who.id)).series[0].points[0].count == 1


async def test_a_failed_write_still_makes_the_next_reads_fresh(
    metric_repository, dashboards, cached, alice, seen
):
    """A repository error may come after its commit: the version moves on all the same."""

    class FailingAfterCommit(testing.InMemoryMetricRepository):
        async def add(self, user_id, draft):
            await metric_repository.add(user_id, draft)
            raise ConnectionError("lost after commit")

    service = MetricsService(
        metrics=CachedMetricRepository(FailingAfterCommit(), dashboards),
        clock=cached.clock,
        cursors=cached.cursors,
    )
    await cached.list(alice.id)

    with pytest.raises(ConnectionError):
        await service.record(alice.id, metric_type="views", metric_value=1)

    assert len((await cached.list(alice.id)).items) == 1
