"""Summaries read from 15-minute rollups equal summaries computed from raw rows.

Whatever is inserted (one by one or in batches) and deleted, in any of these
time zones, across DST changes and with ragged since/until edges, the
PostgreSQL repository agrees with the reference ``engage_core.summaries``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engage_adapters.postgres.metrics import PostgresMetricRepository
from engage_adapters.postgres.pool import open_pool
from engage_core.model import EngagementMetric, MetricDraft, MetricType, MetricValue
from engage_core.queries import Bucket, SummaryQuery
from engage_core.summaries import Aggregate, in_query, summarize

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # half-hour DST shift
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Santiago",  # DST changes at midnight
]
# Around the 2024 DST changes of Europe and the Americas, and a wide spread.
ANCHORS = [
    datetime(2024, 3, 10, 7, tzinfo=UTC),
    datetime(2024, 3, 31, 1, tzinfo=UTC),
    datetime(2024, 9, 8, 3, tzinfo=UTC),
    datetime(2024, 10, 27, 1, tzinfo=UTC),
    datetime(2024, 11, 3, 6, tzinfo=UTC),
    datetime(2024, 4, 6, 15, tzinfo=UTC),  # Lord Howe falls back half an hour
    datetime(2024, 10, 5, 15, 30, tzinfo=UTC),  # and springs forward
]

moments = st.one_of(
    st.builds(
        lambda anchor, minutes: anchor + timedelta(minutes=minutes),
        st.sampled_from(ANCHORS),
        st.floats(min_value=-3 * 24 * 60, max_value=3 * 24 * 60, allow_nan=False),
    ),
    st.datetimes(
        min_value=datetime(1995, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
).map(lambda m: m.replace(microsecond=m.microsecond))
values = st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=3, allow_nan=False)
rows = st.lists(
    st.tuples(st.sampled_from(["views", "clicks", "a.b:c-d"]), values, moments),
    min_size=0,
    max_size=40,
)


def _reference(metrics: list[EngagementMetric], query: SummaryQuery) -> list[tuple[object, ...]]:
    series = summarize((Aggregate.of(m) for m in metrics if in_query(m, query)), query)
    return _flat(series)


def _flat(series: object) -> list[tuple[object, ...]]:
    return [
        (s.metric_type.value, p.start, p.count, p.sum, p.min, p.max)  # type: ignore[attr-defined]
        for s in series  # type: ignore[attr-defined]
        for p in s.points
    ]


async def _check(
    url: str,
    data: list[tuple[str, Decimal, datetime]],
    deleted: set[int],
    zone: str,
    bucket: Bucket,
    window: tuple[datetime | None, datetime | None],
    only_type: str | None,
) -> None:
    pool = await open_pool(url, max_size=2)
    try:
        user_id = uuid.uuid4()
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO users (id, email, email_key, password_hash) VALUES (%s, %s, %s, 'h')",
                [user_id, f"{user_id}@x.test", f"{user_id}@x.test"],
            )
        repo = PostgresMetricRepository(pool)
        now = datetime(2100, 1, 1, tzinfo=UTC)
        drafts = [
            MetricDraft.parse(metric_type=t, metric_value=v, recorded_at=r, now=now)
            for t, v, r in data
        ]
        # Half one by one, half as one batch: both paths keep the rollups.
        half = len(drafts) // 2
        for draft in drafts[:half]:
            await repo.add(user_id, draft)
        await repo.add_many(user_id, drafts[half:])
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, metric_type, metric_value, recorded_at FROM engagement_metrics"
                " WHERE user_id = %s ORDER BY id",
                [user_id],
            )
            stored = await cur.fetchall()
            doomed = [row[0] for i, row in enumerate(stored) if i in deleted]
            await conn.execute("DELETE FROM engagement_metrics WHERE id = ANY(%s)", [doomed])
        remaining = [
            EngagementMetric(
                id=row[0],
                user_id=user_id,
                metric_type=MetricType(row[1]),
                metric_value=MetricValue(row[2]),
                recorded_at=row[3],
            )
            for row in stored
            if row[0] not in doomed
        ]
        query = SummaryQuery(
            bucket=bucket,
            tz=zone,
            since=window[0],
            until=window[1],
            metric_type=MetricType(only_type) if only_type else None,
        )
        got = _flat(await repo.summarize(user_id, query))
        assert got == _reference(remaining, query)
    finally:
        await pool.close()


BERLIN_LATE = datetime(2024, 6, 1, 22, 30, tzinfo=UTC)  # 00:30 the next day in Berlin


@settings(max_examples=100)
@example(
    data=[
        ("views", Decimal(1), BERLIN_LATE),
        ("views", Decimal(2), BERLIN_LATE - timedelta(hours=1)),
    ],
    deleted=set(),
    zone="Europe/Berlin",
    bucket=Bucket.DAY,
    window=(None, None),
    only_type=None,
)
@example(  # the repeated hour of the Berlin fall-back, and a delete inside it
    data=[
        ("views", Decimal(v), datetime(2024, 10, 27, 0, m, tzinfo=UTC))
        for v, m in ((1, 10), (2, 40))
    ]
    + [("views", Decimal(3), datetime(2024, 10, 27, 1, 20, tzinfo=UTC))],
    deleted={1},
    zone="Europe/Berlin",
    bucket=Bucket.HOUR,
    window=(None, None),
    only_type=None,
)
@example(  # Kathmandu's hour starts at :15 UTC; ragged edges inside slots
    data=[("clicks", Decimal(5), datetime(2024, 1, 1, 10, m, tzinfo=UTC)) for m in (5, 14, 16, 50)],
    deleted=set(),
    zone="Asia/Kathmandu",
    bucket=Bucket.HOUR,
    window=(datetime(2024, 1, 1, 10, 7, tzinfo=UTC), datetime(2024, 1, 1, 10, 52, tzinfo=UTC)),
    only_type="clicks",
)
@example(  # Lord Howe: hour buckets of 90 and 30 minutes around its half-hour shifts
    data=[
        ("views", Decimal(1), datetime(2024, 4, 6, 14, 45, tzinfo=UTC)),
        ("views", Decimal(2), datetime(2024, 4, 6, 15, 15, tzinfo=UTC)),
        ("views", Decimal(3), datetime(2024, 10, 5, 15, 15, tzinfo=UTC)),
        ("views", Decimal(4), datetime(2024, 10, 5, 15, 45, tzinfo=UTC)),
    ],
    deleted=set(),
    zone="Australia/Lord_Howe",
    bucket=Bucket.HOUR,
    window=(None, None),
    only_type=None,
)
@example(  # Santiago: midnight does not exist on the day DST starts
    data=[("views", Decimal(1), datetime(2024, 9, 8, 4, 30, tzinfo=UTC))],
    deleted=set(),
    zone="America/Santiago",
    bucket=Bucket.WEEK,
    window=(None, None),
    only_type=None,
)
@given(
    data=rows,
    deleted=st.sets(st.integers(min_value=0, max_value=39), max_size=10),
    zone=st.sampled_from(ZONES),
    bucket=st.sampled_from(list(Bucket)),
    window=st.tuples(st.none() | moments, st.none() | moments),
    only_type=st.none() | st.sampled_from(["views", "clicks"]),
)
def test_summaries_from_rollups_equal_summaries_from_raw_rows(
    pg_url: str,
    data: list[tuple[str, Decimal, datetime]],
    deleted: set[int],
    zone: str,
    bucket: Bucket,
    window: tuple[datetime | None, datetime | None],
    only_type: str | None,
) -> None:
    since, until = window
    if since is not None and until is not None and since >= until:
        since, until = until - timedelta(seconds=1), since + timedelta(seconds=1)
    asyncio.run(_check(pg_url, data, deleted, zone, bucket, (since, until), only_type))
