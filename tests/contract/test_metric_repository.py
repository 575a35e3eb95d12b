"""Contract of MetricRepository: storing, keyset pages and summaries."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import attrs
import pytest

from engage_core.errors import NotFound
from engage_core.model import EngagementMetric, MetricDraft, MetricType, MetricValue, Timestamp
from engage_core.ports import MetricRepository, UserRepository
from engage_core.queries import Bucket, MetricPageQuery, Position, Series, SummaryQuery
from engage_core.summaries import Aggregate, in_query, summarize

if TYPE_CHECKING:
    from conftest import Subject

BERLIN = ZoneInfo("Europe/Berlin")
EVERYTHING = MetricPageQuery(limit=500)
# Europe/Berlin in 2025: clocks jump 02:00 → 03:00 CET→CEST, and fall 03:00 → 02:00 back.
SPRING_FORWARD = datetime(2025, 3, 30, 1, tzinfo=UTC)
FALL_BACK = datetime(2025, 10, 26, 1, tzinfo=UTC)
TYPES = ["page_view", "video.play", "api:call-1"]
VALUES = ["1", "2.5", "-3", "0.1", "0.2", "123456789012.345", "0.00000000000000000001", "7"]


def _draft(metric_type: str, value: str | int, at: datetime) -> MetricDraft:
    return MetricDraft(
        metric_type=MetricType(metric_type),
        metric_value=MetricValue(value),
        recorded_at=Timestamp(at),
    )


def _moments() -> list[datetime]:
    """Instants on both sides of both 2025 DST changes, a week boundary, and a tie."""
    step = timedelta(minutes=35)
    around = [
        start + n * step
        for start in (SPRING_FORWARD - timedelta(hours=5), FALL_BACK - timedelta(hours=5))
        for n in range(16)
    ]
    week_edge = [
        datetime(2025, 10, 19, 21, 30, tzinfo=UTC),  # Sunday 23:30 in Berlin
        datetime(2025, 10, 19, 22, 30, tzinfo=UTC),  # Monday 00:30 in Berlin, Sunday in UTC
        datetime(2025, 10, 20, 0, 0, tzinfo=UTC),  # Monday 00:00 in UTC
    ]
    tie = [datetime(2025, 10, 26, 1, 15, 0, 123456, tzinfo=UTC)] * 3
    return around + week_edge + tie


def _dataset() -> list[MetricDraft]:
    drafts = [
        _draft(metric_type, value, at)
        for at, metric_type, value in zip(
            _moments(), itertools.cycle(TYPES), itertools.cycle(VALUES), strict=False
        )
    ]
    random.Random(20251026).shuffle(drafts)  # ids must not follow time
    return drafts


async def _store(repo: MetricRepository, user_id: UUID, drafts: Sequence[MetricDraft]) -> None:
    half = len(drafts) // 2
    for draft in drafts[:half]:
        await repo.add(user_id, draft)
    assert await repo.add_many(user_id, drafts[half:]) == len(drafts) - half


def _newest_first(metrics: Sequence[EngagementMetric]) -> list[EngagementMetric]:
    return sorted(metrics, key=lambda m: (m.recorded_at, m.id), reverse=True)


@attrs.frozen
class Stored:
    repo: MetricRepository
    user_id: UUID
    metrics: list[EngagementMetric]  # newest first


@pytest.fixture
async def stored(metric_repository: Subject[MetricRepository]) -> Stored:
    """The dataset stored for one user, beside another user's metrics at the same times."""
    repo = metric_repository.impl
    user_id, neighbour = await metric_repository.new_user(), await metric_repository.new_user()
    drafts = _dataset()
    await _store(repo, neighbour, drafts[::2])
    await _store(repo, user_id, drafts)
    metrics = list(await repo.page(user_id, EVERYTHING))

    def content(items: Sequence[MetricDraft | EngagementMetric]) -> list[tuple[object, ...]]:
        return sorted((m.metric_type.value, m.metric_value.value, _recorded_at(m)) for m in items)

    assert content(metrics) == content(drafts)
    return Stored(repo, user_id, metrics)


def _recorded_at(item: MetricDraft | EngagementMetric) -> datetime:
    return item.recorded_at.value if isinstance(item, MetricDraft) else item.recorded_at


# --- add, add_many --------------------------------------------------------------


async def test_add_returns_the_stored_metric_with_increasing_ids(
    metric_repository: Subject[MetricRepository],
) -> None:
    repo, user_id = metric_repository.impl, await metric_repository.new_user()
    at = datetime(2025, 6, 1, 12, 30, 15, 250000, tzinfo=UTC)
    drafts = [_draft("page_view", "1.5", at), _draft("video.play", -2, at), _draft("a", 0, at)]

    added = [await repo.add(user_id, draft) for draft in drafts]

    ids = [m.id for m in added]
    assert ids == sorted(set(ids))
    for metric, draft in zip(added, drafts, strict=True):
        assert metric.user_id == user_id
        assert metric.metric_type == draft.metric_type
        assert metric.metric_value == draft.metric_value
        assert metric.recorded_at == at
    assert _newest_first(await repo.page(user_id, EVERYTHING)) == _newest_first(added)


async def test_add_many_stores_every_draft_and_returns_their_count(
    metric_repository: Subject[MetricRepository],
) -> None:
    repo, user_id = metric_repository.impl, await metric_repository.new_user()
    start = datetime(2025, 6, 1, tzinfo=UTC)
    drafts = [_draft("page_view", n, start + timedelta(minutes=n)) for n in range(25)]
    before = await repo.add(user_id, _draft("page_view", 1, start))

    assert await repo.add_many(user_id, drafts) == 25
    after = await repo.add(user_id, _draft("page_view", 1, start))

    stored = await repo.page(user_id, EVERYTHING)
    assert len(stored) == 27
    assert len({m.id for m in stored}) == 27
    assert sorted(m.metric_value.value for m in stored if m.id not in {before.id, after.id}) == [
        Decimal(n) for n in range(25)
    ]
    assert all(before.id < m.id < after.id for m in stored if m.id not in {before.id, after.id})


@pytest.mark.parametrize(
    "spelling", ["1.50", "1E+2", "-0", "0.000", "2.5e-3", "100", "-12.340", "0.1000000000000001"]
)
async def test_values_read_back_print_as_they_were_validated(
    metric_repository: Subject[MetricRepository], spelling: str
) -> None:
    repo, user_id = metric_repository.impl, await metric_repository.new_user()
    at = datetime(2025, 6, 1, tzinfo=UTC)
    validated = MetricValue(spelling)
    await repo.add(user_id, _draft("single", spelling, at))
    await repo.add_many(user_id, [_draft("batch", spelling, at)])

    read = await repo.page(user_id, EVERYTHING)

    assert [str(m.metric_value) for m in read] == [str(validated)] * 2
    assert [m.metric_value for m in read] == [validated] * 2
    assert {hash(m.metric_type) for m in read} == {
        hash(MetricType("single")),
        hash(MetricType("batch")),
    }


async def test_add_many_of_nothing_stores_nothing(
    metric_repository: Subject[MetricRepository],
) -> None:
    repo, user_id = metric_repository.impl, await metric_repository.new_user()

    assert await repo.add_many(user_id, []) == 0
    assert list(await repo.page(user_id, EVERYTHING)) == []


# --- page -----------------------------------------------------------------------


async def test_page_is_newest_first_ties_broken_by_newest_id(stored: Stored) -> None:
    assert stored.metrics == _newest_first(stored.metrics)
    tied = [m for m in stored.metrics if m.recorded_at == _moments()[-1]]
    assert len(tied) == 3
    assert [m.id for m in tied] == sorted((m.id for m in tied), reverse=True)


async def test_page_returns_at_most_limit_metrics_from_the_newest(stored: Stored) -> None:
    for limit in [1, 2, 5, 500]:
        page = await stored.repo.page(stored.user_id, MetricPageQuery(limit=limit))

        assert list(page) == stored.metrics[:limit], f"limit={limit}"


PAGE_QUERIES = {
    "type": MetricPageQuery(limit=500, metric_type=MetricType("video.play")),
    "since-inclusive": MetricPageQuery(limit=500, since=_moments()[5]),
    "until-exclusive": MetricPageQuery(limit=500, until=_moments()[20]),
    "since-until": MetricPageQuery(limit=500, since=SPRING_FORWARD, until=FALL_BACK),
    "all-three": MetricPageQuery(
        limit=500,
        metric_type=MetricType("page_view"),
        since=SPRING_FORWARD,
        until=FALL_BACK + timedelta(hours=1),
    ),
    "matches-nothing": MetricPageQuery(limit=500, metric_type=MetricType("never.recorded")),
}


def _wanted_by(
    query: MetricPageQuery, metrics: Sequence[EngagementMetric]
) -> list[EngagementMetric]:
    return [
        m
        for m in metrics
        if (query.metric_type is None or m.metric_type == query.metric_type)
        and (query.since is None or m.recorded_at >= query.since)
        and (query.until is None or m.recorded_at < query.until)
    ]


async def test_page_filters_by_type_and_time_range(stored: Stored) -> None:
    for name, query in PAGE_QUERIES.items():
        page = await stored.repo.page(stored.user_id, query)

        assert list(page) == _wanted_by(query, stored.metrics), name


async def test_page_after_a_position_starts_strictly_after_it(stored: Stored) -> None:
    for index, metric in enumerate(stored.metrics):
        after = Position(metric.recorded_at, metric.id)

        page = await stored.repo.page(stored.user_id, MetricPageQuery(limit=500, after=after))

        assert list(page) == stored.metrics[index + 1 :]


async def test_page_after_a_position_between_metrics(stored: Stored) -> None:
    tied = [m for m in stored.metrics if m.recorded_at == _moments()[-1]]
    newest_tied_id = tied[0].id
    between = [
        # A moment with no metric: everything older than it.
        Position(_moments()[-1] + timedelta(microseconds=1), 0),
        # Inside the tie, an id above them all: the whole tie follows.
        Position(_moments()[-1], newest_tied_id + 1_000_000),
        # Inside the tie, an id below them all: the whole tie is before.
        Position(_moments()[-1], 0),
    ]

    for after in between:
        page = await stored.repo.page(stored.user_id, MetricPageQuery(limit=500, after=after))

        assert list(page) == [
            m for m in stored.metrics if (m.recorded_at, m.id) < (after.recorded_at, after.id)
        ]


async def _walk(stored: Stored, query: MetricPageQuery) -> list[EngagementMetric]:
    seen: list[EngagementMetric] = []
    after: Position | None = None
    while page := await stored.repo.page(stored.user_id, attrs.evolve(query, after=after)):
        assert len(page) <= query.limit
        seen += page
        after = Position(page[-1].recorded_at, page[-1].id)
    return seen


async def test_walking_pages_visits_every_metric_once_in_order(stored: Stored) -> None:
    for base in [EVERYTHING, PAGE_QUERIES["since-until"], PAGE_QUERIES["type"]]:
        for limit in [1, 3, 7]:
            query = attrs.evolve(base, limit=limit)

            assert await _walk(stored, query) == _wanted_by(query, stored.metrics), query


async def test_one_users_metrics_are_invisible_to_another(
    metric_repository: Subject[MetricRepository],
) -> None:
    repo = metric_repository.impl
    alice, bob = await metric_repository.new_user(), await metric_repository.new_user()
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)
    alices = await repo.add(alice, _draft("page_view", 1, at))
    await repo.add_many(bob, [_draft("page_view", 2, at), _draft("video.play", 3, at)])

    assert list(await repo.page(alice, EVERYTHING)) == [alices]
    assert len(await repo.page(bob, EVERYTHING)) == 2
    assert list(await repo.page(uuid4(), EVERYTHING)) == []
    alice_summary = await repo.summarize(alice, SummaryQuery())
    assert [(s.metric_type.value, [p.sum for p in s.points]) for s in alice_summary] == [
        ("page_view", [Decimal(1)])
    ]
    assert list(await repo.summarize(uuid4(), SummaryQuery())) == []


async def test_metrics_of_a_user_who_does_not_exist_are_refused_and_nothing_is_stored(
    metric_repository: Subject[MetricRepository],
) -> None:
    """As a foreign key refuses them: NotFound, a core error, never a driver's."""
    repo, nobody = metric_repository.impl, uuid4()
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)

    with pytest.raises(NotFound):
        await repo.add(nobody, _draft("page_view", 1, at))
    with pytest.raises(NotFound):
        await repo.add_many(nobody, [_draft("page_view", 2, at), _draft("video.play", 3, at)])

    assert list(await repo.page(nobody, EVERYTHING)) == []
    assert list(await repo.summarize(nobody, SummaryQuery())) == []
    # The repository goes on serving users who exist.
    user_id = await metric_repository.new_user()
    await repo.add(user_id, _draft("page_view", 4, at))
    assert len(await repo.page(user_id, EVERYTHING)) == 1


async def test_a_deleted_users_metrics_are_refused_too(
    metric_user_store: tuple[Subject[MetricRepository], UserRepository],
) -> None:
    metrics, users = metric_user_store
    user_id = await metrics.new_user()
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)
    await metrics.impl.add(user_id, _draft("page_view", 1, at))
    assert await users.delete(user_id)

    with pytest.raises(NotFound):
        await metrics.impl.add(user_id, _draft("page_view", 2, at))
    with pytest.raises(NotFound):
        await metrics.impl.add_many(user_id, [_draft("page_view", 3, at)])
    assert list(await metrics.impl.page(user_id, EVERYTHING)) == []


# --- summarize ------------------------------------------------------------------


def _reference(metrics: Sequence[EngagementMetric], query: SummaryQuery) -> tuple[Series, ...]:
    return summarize((Aggregate.of(m) for m in metrics if in_query(m, query)), query)


def _in_utc(series: Sequence[Series]) -> list[tuple[str, list[tuple[object, ...]]]]:
    """Series with bucket starts as UTC instants.

    Two aware datetimes in one zone compare by wall time alone, so the two buckets of
    a repeated fall-back hour would compare equal; UTC tells them apart.
    """
    return [
        (
            s.metric_type.value,
            [(p.start.astimezone(UTC), p.count, p.sum, p.min, p.max) for p in s.points],
        )
        for s in series
    ]


SUMMARY_FILTERS = {
    "none": SummaryQuery(),
    "type": SummaryQuery(metric_type=MetricType("page_view")),
    "since": SummaryQuery(since=SPRING_FORWARD),
    "until": SummaryQuery(until=FALL_BACK),
    "since-on-a-metric": SummaryQuery(since=_moments()[3]),
    "until-on-a-metric": SummaryQuery(until=_moments()[-1]),
    "all-three": SummaryQuery(
        metric_type=MetricType("video.play"),
        since=SPRING_FORWARD - timedelta(hours=2),
        until=FALL_BACK + timedelta(hours=1),
    ),
    "matches-nothing": SummaryQuery(metric_type=MetricType("never.recorded")),
}


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize("bucket", list(Bucket))
async def test_summarize_agrees_with_the_reference(stored: Stored, bucket: Bucket, tz: str) -> None:
    for name, filters in SUMMARY_FILTERS.items():
        query = attrs.evolve(filters, bucket=bucket, tz=tz)

        series = await stored.repo.summarize(stored.user_id, query)

        assert _in_utc(series) == _in_utc(_reference(stored.metrics, query)), name
        for point in (p for s in series for p in s.points):
            assert point.start.utcoffset() == point.start.astimezone(query.tz).utcoffset(), name


async def test_summary_buckets_across_berlin_dst_changes(
    metric_repository: Subject[MetricRepository],
) -> None:
    repo, user_id = metric_repository.impl, await metric_repository.new_user()
    await repo.add_many(
        user_id,
        [
            _draft("t", 1, SPRING_FORWARD - timedelta(minutes=30)),  # 01:30 CET
            _draft("t", 2, SPRING_FORWARD + timedelta(minutes=30)),  # 03:30 CEST
            _draft("t", 3, FALL_BACK - timedelta(minutes=30)),  # 02:30 CEST
            _draft("t", 4, FALL_BACK + timedelta(minutes=30)),  # 02:30 CET, the repeated hour
        ],
    )

    async def starts_and_sums(bucket: str) -> list[tuple[datetime, int]]:
        (series,) = await repo.summarize(user_id, SummaryQuery(bucket=bucket, tz=BERLIN))
        return [(p.start.astimezone(UTC), int(p.sum)) for p in series.points]

    def utc(month: int, day: int, hour: int) -> datetime:
        return datetime(2025, month, day, hour, tzinfo=UTC)

    assert await starts_and_sums("hour") == [
        (utc(3, 30, 0), 1),
        (utc(3, 30, 1), 2),
        (utc(10, 26, 0), 3),
        (utc(10, 26, 1), 4),
    ]
    assert await starts_and_sums("day") == [
        (utc(3, 29, 23), 3),  # local midnight, CET
        (utc(10, 25, 22), 7),  # local midnight, CEST
    ]
    assert await starts_and_sums("week") == [
        (utc(3, 23, 23), 3),  # Monday 24 March, CET
        (utc(10, 19, 22), 7),  # Monday 20 October, CEST
    ]


async def test_summary_sums_are_exact(metric_repository: Subject[MetricRepository]) -> None:
    repo, user_id = metric_repository.impl, await metric_repository.new_user()
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)
    values = ["999999999999999.9", "0.00000000000000000001", "-0.1", "0.2"]
    await repo.add_many(user_id, [_draft("t", v, at) for v in values])

    (series,) = await repo.summarize(user_id, SummaryQuery(bucket="day"))

    (point,) = series.points
    assert point.count == 4
    assert point.sum == Decimal("1000000000000000.00000000000000000001")
    assert point.min == Decimal("-0.1")
    assert point.max == Decimal("999999999999999.9")
