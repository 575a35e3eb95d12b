"""Dashboard summaries: count, sum, avg, min, max per bucket of local time and metric type."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from engage_core import Bucket, MetricType, Point, ValidationFailed

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*parts):
    return datetime(*parts, tzinfo=UTC)


@pytest.fixture
def record_all(metrics):
    async def record_all(user_id, rows):
        await metrics.record_batch(
            user_id,
            [
                {"metric_type": kind, "metric_value": value, "recorded_at": moment}
                for kind, value, moment in rows
            ],
        )

    return record_all


def table(summary):
    """The summary as plain tuples: (type, local start, count, sum, avg, min, max)."""
    return [
        (
            series.metric_type.value,
            point.start.replace(tzinfo=None),
            point.count,
            point.sum,
            point.avg,
            point.min,
            point.max,
        )
        for series in summary.series
        for point in series.points
    ]


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"bucket": "month"}, "bucket"),
        ({"bucket": ""}, "bucket"),
        ({"bucket": 1}, "bucket"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"tz": ""}, "tz"),
        ({"tz": 2}, "tz"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"until": "soon"}, "until"),
        ({"metric_type": "bad type"}, "metric_type"),
    ],
)
async def test_summary_refuses_invalid_arguments_naming_the_field(
    metrics, stranger_id, arguments, field
):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.summary(stranger_id, **arguments)

    assert [e.field for e in caught.value.errors] == [field]


async def test_summary_reports_every_invalid_argument_together(metrics, stranger_id):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.summary(stranger_id, bucket="month", tz="Mars/Olympus", metric_type="")

    assert {e.field for e in caught.value.errors} == {"bucket", "tz", "metric_type"}


@pytest.mark.parametrize(
    ("since", "until"),
    [(utc(2026, 1, 1), utc(2026, 1, 1)), (utc(2026, 1, 2), utc(2026, 1, 1))],
)
async def test_summary_refuses_since_at_or_after_until(metrics, stranger_id, since, until):
    with pytest.raises(ValidationFailed):
        await metrics.summary(stranger_id, since=since, until=until)


async def test_summary_defaults_to_day_buckets_in_utc(metrics, stranger_id):
    summary = await metrics.summary(stranger_id)

    assert summary.bucket is Bucket.DAY
    assert summary.tz == ZoneInfo("UTC")
    assert summary.series == ()


async def test_summary_echoes_its_bucket_and_time_zone(metrics, stranger_id):
    summary = await metrics.summary(stranger_id, bucket="week", tz="Europe/Berlin")

    assert summary.bucket is Bucket.WEEK
    assert summary.tz == BERLIN


# --- arithmetic ---------------------------------------------------------------------------


@pytest.fixture
async def berlin_new_year(stranger_id, record_all):
    # Berlin is UTC+1 in winter: 23:00Z is local midnight of the next day.
    await record_all(
        stranger_id,
        [
            ("page_view", 10, utc(2025, 12, 30, 22, 59, 59)),  # Dec 30, 23:59:59 local
            ("page_view", "1.5", utc(2025, 12, 30, 23, 0)),  # Dec 31, 00:00 local
            ("page_view", "2.5", utc(2025, 12, 31, 12, 0)),  # Dec 31
            ("page_view", 5, utc(2025, 12, 31, 22, 30)),  # Dec 31, 23:30 local
            ("page_view", -4, utc(2025, 12, 31, 23, 30)),  # Jan 1, 00:30 local
            ("video.play", 7, utc(2025, 12, 31, 10, 0)),  # Dec 31
            ("video.play", 2, utc(2025, 12, 31, 11, 0)),  # Dec 31
        ],
    )


async def test_day_buckets_follow_local_midnight_in_berlin(metrics, stranger_id, berlin_new_year):
    summary = await metrics.summary(stranger_id, bucket="day", tz="Europe/Berlin")

    D = Decimal
    assert table(summary) == [
        ("page_view", datetime(2025, 12, 30), 1, D(10), D(10), D(10), D(10)),
        ("page_view", datetime(2025, 12, 31), 3, D(9), D(3), D("1.5"), D(5)),
        ("page_view", datetime(2026, 1, 1), 1, D(-4), D(-4), D(-4), D(-4)),
        ("video.play", datetime(2025, 12, 31), 2, D(9), D("4.5"), D(2), D(7)),
    ]


async def test_bucket_starts_are_the_local_midnights_as_instants(
    metrics, stranger_id, berlin_new_year
):
    summary = await metrics.summary(stranger_id, bucket="day", tz="Europe/Berlin")

    page_views = summary.series[0]
    assert page_views.metric_type == MetricType("page_view")
    assert [p.start for p in page_views.points] == [
        utc(2025, 12, 29, 23),
        utc(2025, 12, 30, 23),
        utc(2025, 12, 31, 23),
    ]
    assert all(p.start.tzinfo == BERLIN for p in page_views.points)


async def test_the_same_metrics_bucket_differently_in_utc(metrics, stranger_id, berlin_new_year):
    summary = await metrics.summary(stranger_id, bucket="day", tz="UTC", metric_type="page_view")

    D = Decimal
    avg = D("1.16666666666666666667")  # 3.5 / 3, to 20 places
    assert table(summary) == [
        ("page_view", datetime(2025, 12, 30), 2, D("11.5"), D("5.75"), D("1.5"), D(10)),
        ("page_view", datetime(2025, 12, 31), 3, D("3.5"), avg, D(-4), D(5)),
    ]


@pytest.mark.parametrize(
    ("total", "count", "average"),
    [
        ("5", 3, "1.66666666666666666667"),
        ("9", 3, "3"),
        ("7.50", 3, "2.5"),
        ("-4", 1, "-4"),
        # Rounding this to 20 places takes 46 digits: more than Decimal's default 28.
        ("10000000000000000000000001", 2, "5000000000000000000000000.5"),
    ],
)
def test_a_points_average_has_20_decimal_places_at_most_and_no_trailing_zeros(
    total, count, average
):
    wide = Decimal(10) ** 30  # min and max far apart: only the rounding is under test
    point = Point(start=utc(2026, 1, 1), count=count, sum=Decimal(total), min=-wide, max=wide)

    assert str(point.avg) == average


@pytest.mark.parametrize(
    ("values", "average"),
    [
        # Finer than 20 places: the rounded mean (0) would lie below min.
        (["1E-24", "1E-24"], "1E-24"),
        (["-1E-24", "-1E-24"], "-1E-24"),
        (["1E-24", "3E-24"], "1E-24"),
        (["0.1", "0.2"], "0.15"),
    ],
)
def test_a_points_average_never_lies_outside_its_min_and_max(values, average):
    numbers = [Decimal(v) for v in values]
    point = Point(
        start=utc(2026, 1, 1),
        count=len(numbers),
        sum=sum(numbers, Decimal(0)),
        min=min(numbers),
        max=max(numbers),
    )

    assert point.min <= point.avg <= point.max
    assert str(point.avg) == average


async def test_summary_applies_since_until_and_metric_type(metrics, stranger_id, berlin_new_year):
    summary = await metrics.summary(
        stranger_id,
        tz="Europe/Berlin",
        metric_type="page_view",
        since=utc(2025, 12, 30, 23, 0),  # inclusive: keeps the 1.5
        until=utc(2025, 12, 31, 22, 30),  # exclusive: drops the 5
    )

    D = Decimal
    assert table(summary) == [
        ("page_view", datetime(2025, 12, 31), 2, D(4), D(2), D("1.5"), D("2.5")),
    ]


async def test_summary_counts_only_the_users_own_metrics(
    metrics, stranger_id, berlin_new_year, record_all, new_user_id
):
    await record_all(await new_user_id(), [("page_view", 1000, utc(2025, 12, 31, 12, 0))])

    summary = await metrics.summary(stranger_id, tz="Europe/Berlin", metric_type="page_view")

    assert [p.count for p in summary.series[0].points] == [1, 3, 1]
    assert max(p.max for p in summary.series[0].points) == 10


async def test_a_day_bucket_over_the_spring_dst_change_is_23_hours(
    metrics, stranger_id, record_all
):
    await record_all(
        stranger_id,
        [
            ("page_view", 1, utc(2025, 3, 29, 23, 0)),  # Mar 30, 00:00 CET
            ("page_view", 2, utc(2025, 3, 30, 21, 59)),  # Mar 30, 23:59 CEST
            ("page_view", 4, utc(2025, 3, 30, 22, 0)),  # Mar 31, 00:00 CEST
        ],
    )

    summary = await metrics.summary(stranger_id, tz="Europe/Berlin")

    points = summary.series[0].points
    assert [(p.start, p.count, p.sum) for p in points] == [
        (utc(2025, 3, 29, 23), 2, Decimal(3)),
        (utc(2025, 3, 30, 22), 1, Decimal(4)),
    ]


async def test_week_buckets_start_on_local_monday(metrics, stranger_id, record_all):
    await record_all(
        stranger_id,
        [
            ("page_view", 1, utc(2025, 12, 28, 22, 30)),  # Sunday Dec 28, 23:30 Berlin
            ("page_view", 2, utc(2025, 12, 28, 23, 30)),  # Monday Dec 29, 00:30 Berlin
            ("page_view", 3, utc(2026, 1, 1, 11, 0)),  # Thursday Jan 1
        ],
    )

    summary = await metrics.summary(stranger_id, bucket="week", tz="Europe/Berlin")

    assert [(p.start, p.count, p.sum) for p in summary.series[0].points] == [
        (utc(2025, 12, 21, 23), 1, Decimal(1)),
        (utc(2025, 12, 28, 23), 2, Decimal(5)),
    ]


async def test_hour_buckets_follow_a_half_hour_offset(metrics, stranger_id, record_all):
    await record_all(
        stranger_id,
        [
            ("page_view", 1, utc(2026, 1, 1, 9, 29)),  # 14:59 in Kolkata
            ("page_view", 2, utc(2026, 1, 1, 9, 30)),  # 15:00
            ("page_view", 3, utc(2026, 1, 1, 10, 29)),  # 15:59
        ],
    )

    summary = await metrics.summary(stranger_id, bucket="hour", tz="Asia/Kolkata")

    assert [(p.start, p.count, p.sum) for p in summary.series[0].points] == [
        (utc(2026, 1, 1, 8, 30), 1, Decimal(1)),
        (utc(2026, 1, 1, 9, 30), 2, Decimal(5)),
    ]
