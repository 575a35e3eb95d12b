"""Dashboard summaries: the bucketing rules, and a reference implementation.

A bucket is an hour, a day or an ISO week (Monday first) of wall-clock time
in the query's time zone:

- an hour starts at the last instant whose local minute and second were 0,
  so the repeated hour of a DST fall-back yields two separate buckets, and
  across a half-hour DST shift an hour bucket lasts 30 or 90 minutes;
- a day (or week) starts at the first instant of that local date: local
  midnight, or the end of the DST gap where midnight does not exist.

Only non-empty buckets are reported. Repositories may compute summaries any
way they like (the PostgreSQL one reads 15-minute rollups), but must agree
with ``summarize`` here; the contract tests hold them to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

from attrs import define, frozen

from engage_core.model import EngagementMetric, MetricType
from engage_core.queries import Bucket, Point, Series, SummaryQuery

__all__ = [
    "EXACT_PRECISION",
    "Aggregate",
    "bucket_start",
    "in_query",
    "start_of_local_date",
    "summarize",
]

# Enough digits that sums are exact, as PostgreSQL's numeric is: values have at most
# 15 integer digits and MAX_METRIC_VALUE_DECIMALS decimals.
EXACT_PRECISION = 1100


def bucket_start(moment: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    """The instant (in UTC) at which the bucket holding ``moment`` starts."""
    local = moment.astimezone(tz)
    if bucket is Bucket.HOUR:
        # Step back to the previous local :00. Where the offset changed in
        # between (a half-hour DST shift) the first step lands on :30; one more
        # step reaches the hour. Offsets change at most once within an hour.
        start = moment
        while local.minute or local.second or local.microsecond:
            start -= timedelta(
                minutes=local.minute, seconds=local.second, microseconds=local.microsecond
            )
            local = start.astimezone(tz)
        return start.astimezone(UTC)
    day = local.date()
    if bucket is Bucket.WEEK:
        day -= timedelta(days=day.weekday())
    return start_of_local_date(day, tz)


def start_of_local_date(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz``."""
    # fold=0 reads a non-existent midnight with the offset before the gap,
    # which lands on the first instant after it; an ambiguous one, on the first.
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


@frozen(kw_only=True)
class Aggregate:
    """Count, sum, min and max of one type's values from ``start`` on.

    A single metric is an aggregate of one; a 15-minute rollup is another.
    """

    metric_type: MetricType
    start: datetime
    count: int
    sum: Decimal
    min: Decimal
    max: Decimal

    @classmethod
    def of(cls, metric: EngagementMetric) -> Aggregate:
        value = metric.metric_value.value
        return cls(
            metric_type=metric.metric_type,
            start=metric.recorded_at,
            count=1,
            sum=value,
            min=value,
            max=value,
        )


def in_query(metric: EngagementMetric, query: SummaryQuery) -> bool:
    """Whether a metric falls in the query's range (since inclusive, until exclusive)."""
    return (
        (query.metric_type is None or metric.metric_type == query.metric_type)
        and (query.since is None or metric.recorded_at >= query.since)
        and (query.until is None or metric.recorded_at < query.until)
    )


@define
class _Running:
    count: int
    sum: Decimal
    min: Decimal
    max: Decimal

    def add(self, item: Aggregate) -> None:
        self.count += item.count
        self.sum += item.sum
        self.min = min(self.min, item.min)
        self.max = max(self.max, item.max)


def summarize(aggregates: Iterable[Aggregate], query: SummaryQuery) -> tuple[Series, ...]:
    """Fold aggregates into per-type series of buckets, types and starts ascending.

    The caller has already applied the query's filters to ``aggregates``.
    """
    buckets: dict[tuple[MetricType, datetime], _Running] = {}
    with localcontext(prec=EXACT_PRECISION):
        for item in aggregates:
            key = (item.metric_type, bucket_start(item.start, query.bucket, query.tz))
            running = buckets.get(key)
            if running is None:
                buckets[key] = _Running(item.count, item.sum, item.min, item.max)
            else:
                running.add(item)
    series: dict[MetricType, list[Point]] = {}
    for (metric_type, start), running in sorted(buckets.items(), key=lambda kv: kv[0]):
        series.setdefault(metric_type, []).append(
            Point(
                start=start.astimezone(query.tz),
                count=running.count,
                sum=running.sum,
                min=running.min,
                max=running.max,
            )
        )
    return tuple(Series(metric_type=t, points=tuple(p)) for t, p in series.items())
