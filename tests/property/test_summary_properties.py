"""Summary arithmetic and bucketing across time zones and DST.

A bucket is an hour, a day or an ISO week (Monday first) of wall-clock time in
the query's zone (see ``engage_core.summaries``). The expectations here are
worked out from that definition by scanning local wall clocks, not by calling
the code under test. Every zone used has offsets in whole quarter hours (since
1970), so every bucket boundary falls on a quarter hour of UTC.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from uuid import UUID
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from engage_core.errors import ValidationFailed
from engage_core.model import EngagementMetric, MetricType, MetricValue
from engage_core.queries import Bucket, Point, Series, SummaryQuery
from engage_core.summaries import Aggregate, bucket_start, start_of_local_date, summarize

ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # DST shifts by 30 minutes
    "Asia/Kolkata",  # +05:30
    "America/Santiago",  # DST starts at midnight
    "Pacific/Chatham",  # +12:45 / +13:45
)
TYPES = ("clicks", "page_view", "video.play")
QUARTER = timedelta(minutes=15)
MICROSECOND = timedelta(microseconds=1)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 12, 31, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
BERLIN_SPRING_FORWARD = datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
BERLIN_FALL_BACK = datetime(2024, 10, 27, 1, 0, tzinfo=UTC)

summary_settings = settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)


# --- the definition, by scanning wall clocks ------------------------------------


def floor_to_quarter(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment - timedelta(
        minutes=moment.minute % 15, seconds=moment.second, microseconds=moment.microsecond
    )


def on_the_local_hour(moment: datetime, tz: ZoneInfo) -> bool:
    local = moment.astimezone(tz)
    return local.minute == local.second == local.microsecond == 0


def expected_hour_start(moment: datetime, tz: ZoneInfo) -> datetime:
    """The last instant at or before ``moment`` whose local minute and second were 0."""
    candidate = floor_to_quarter(moment)
    for _ in range(16):
        if on_the_local_hour(candidate, tz):
            return candidate
        candidate -= QUARTER
    raise AssertionError(f"no local hour start within 4 hours before {moment} in {tz}")


def expected_hour_end(start: datetime, tz: ZoneInfo) -> datetime:
    """The first instant after ``start`` whose local minute and second are 0."""
    candidate = floor_to_quarter(start) + QUARTER
    for _ in range(16):
        if on_the_local_hour(candidate, tz):
            return candidate
        candidate += QUARTER
    raise AssertionError(f"no local hour start within 4 hours after {start} in {tz}")


def local_date(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


@functools.cache
def first_instant_of(day: date, tz: ZoneInfo) -> datetime:
    """The first instant whose local date in ``tz`` is ``day`` (or later)."""
    # No zone is 15 hours ahead of UTC, so this is still the day before locally.
    candidate = datetime.combine(day, time(0), tzinfo=UTC) - timedelta(hours=15)
    while local_date(candidate, tz) < day:
        candidate += QUARTER
    return candidate


def expected_bucket_start(moment: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    """Where the bucket that holds ``moment`` starts, by definition."""
    if bucket is Bucket.HOUR:
        return expected_hour_start(moment, tz)
    day = local_date(moment, tz)
    if bucket is Bucket.WEEK:
        day -= timedelta(days=day.weekday())
    return first_instant_of(day, tz)


def next_bucket_start(start: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    """Where the bucket after the one starting at ``start`` begins, by definition."""
    if bucket is Bucket.HOUR:
        return expected_hour_end(start, tz)
    days = 7 if bucket is Bucket.WEEK else 1
    return first_instant_of(local_date(start, tz) + timedelta(days=days), tz)


# --- generating metrics ---------------------------------------------------------


@functools.cache
def offset_changes(zone: str) -> tuple[datetime, ...]:
    """The instants (to the second) at which ``zone`` changes its UTC offset, 1970..2100."""
    tz = ZoneInfo(zone)
    changes = []
    step = timedelta(days=7)
    moment = EARLIEST
    while moment < LATEST:
        after = moment + step
        if moment.astimezone(tz).utcoffset() != after.astimezone(tz).utcoffset():
            low, high = moment, after
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = middle
                else:
                    high = middle
            changes.append(high)
        moment = after
    return tuple(changes)


def anchors(zone: str) -> st.SearchStrategy[datetime]:
    """Instants worth probing: offset changes, local midnights, anything 1970..2100."""
    tz = ZoneInfo(zone)
    special = (*offset_changes(zone), BERLIN_SPRING_FORWARD, BERLIN_FALL_BACK)
    local_midnights = st.dates(date(1970, 1, 2), date(2100, 12, 30)).map(
        lambda day: datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    )
    anywhere = st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC)
    )
    return st.one_of(st.sampled_from(special), local_midnights, anywhere)


near = st.one_of(
    st.timedeltas(min_value=timedelta(hours=-3), max_value=timedelta(hours=3)),
    st.timedeltas(min_value=timedelta(days=-9), max_value=timedelta(days=9)),
)


@st.composite
def metric_values(draw: st.DrawFn) -> Decimal:
    places = draw(st.integers(min_value=0, max_value=20))
    bound = 10 ** (15 + places)
    return Decimal(f"{draw(st.integers(min_value=-(bound - 1), max_value=bound - 1))}E-{places}")


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ZoneInfo, list[EngagementMetric]]:
    """A zone and metrics clustered around a few interesting instants."""
    zone = draw(st.sampled_from(ZONES))
    centres = draw(st.lists(anchors(zone), min_size=1, max_size=3))
    user_id = draw(st.uuids())
    metrics = []
    for metric_id in range(1, draw(st.integers(min_value=0, max_value=30)) + 1):
        moment = draw(st.sampled_from(centres)) + draw(near)
        metrics.append(
            EngagementMetric(
                id=metric_id,
                user_id=user_id,
                metric_type=MetricType(draw(st.sampled_from(TYPES))),
                metric_value=MetricValue(draw(metric_values())),
                recorded_at=min(max(moment, EARLIEST), LATEST),
            )
        )
    return ZoneInfo(zone), metrics


buckets = st.sampled_from(list(Bucket))
zones_and_moments = st.sampled_from(ZONES).flatmap(
    lambda zone: st.tuples(
        st.just(ZoneInfo(zone)),
        st.builds(
            lambda centre, shift: min(max(centre + shift, EARLIEST), LATEST), anchors(zone), near
        ),
    )
)


def metric_at(moment: str, metric_id: int = 1, value: int = 1) -> EngagementMetric:
    return EngagementMetric(
        id=metric_id,
        user_id=UUID(int=1),
        metric_type=MetricType("clicks"),
        metric_value=MetricValue(value),
        recorded_at=datetime.fromisoformat(moment),
    )


LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
# 2024-04-07 02:00+11:00 falls back to 01:30+10:30; 2024-10-06 02:00+10:30 springs to 02:30+11:00.
LORD_HOWE_FALL_BACK = (
    LORD_HOWE,
    [metric_at("2024-04-06T14:45Z", 1, 1), metric_at("2024-04-06T15:15Z", 2, 2)],
)
LORD_HOWE_SPRING_FORWARD = (
    LORD_HOWE,
    [metric_at("2024-10-05T15:15Z", 1, 1), metric_at("2024-10-05T15:45Z", 2, 2)],
)


def summary_of(metrics: Iterable[EngagementMetric], bucket: Bucket, tz: ZoneInfo) -> list[Series]:
    query = SummaryQuery(bucket=bucket, tz=tz)
    return list(summarize([Aggregate.of(m) for m in metrics], query))


def points_by_type(series: Sequence[Series]) -> dict[str, tuple[Point, ...]]:
    return {s.metric_type.value: s.points for s in series}


def metrics_by_type(metrics: Iterable[EngagementMetric]) -> dict[str, list[EngagementMetric]]:
    grouped: dict[str, list[EngagementMetric]] = defaultdict(list)
    for metric in metrics:
        grouped[metric.metric_type.value].append(metric)
    return grouped


def values(metrics: Iterable[EngagementMetric]) -> list[Decimal]:
    return [m.metric_value.value for m in metrics]


def utc(moment: datetime) -> datetime:
    # Aware datetimes sharing one ZoneInfo compare by wall clock; compare in UTC.
    return moment.astimezone(UTC)


def table(
    series: Iterable[Series],
) -> list[tuple[str, list[tuple[datetime, int, Fraction, Decimal, Decimal]]]]:
    """A summary as plain data, with every start in UTC."""
    return [
        (
            s.metric_type.value,
            [(utc(p.start), p.count, Fraction(p.sum), p.min, p.max) for p in s.points],
        )
        for s in series
    ]


# --- arithmetic -----------------------------------------------------------------


@summary_settings
@given(scenarios(), buckets)
def test_bucket_counts_add_up_to_the_number_of_metrics_of_each_type(
    scenario: tuple[ZoneInfo, list[EngagementMetric]], bucket: Bucket
) -> None:
    tz, metrics = scenario
    points = points_by_type(summary_of(metrics, bucket, tz))
    expected = {t: len(ms) for t, ms in metrics_by_type(metrics).items()}
    assert {t: sum(p.count for p in ps) for t, ps in points.items()} == expected


@summary_settings
@given(scenarios(), buckets)
def test_bucket_sums_add_up_exactly_to_the_total_of_each_type(
    scenario: tuple[ZoneInfo, list[EngagementMetric]], bucket: Bucket
) -> None:
    tz, metrics = scenario
    points = points_by_type(summary_of(metrics, bucket, tz))
    expected = {t: sum(map(Fraction, values(ms))) for t, ms in metrics_by_type(metrics).items()}
    assert {t: sum(Fraction(p.sum) for p in ps) for t, ps in points.items()} == expected


@summary_settings
@given(scenarios(), buckets)
def test_bucket_extremes_give_the_minimum_and_maximum_of_each_type(
    scenario: tuple[ZoneInfo, list[EngagementMetric]], bucket: Bucket
) -> None:
    tz, metrics = scenario
    points = points_by_type(summary_of(metrics, bucket, tz))
    grouped = metrics_by_type(metrics)
    assert {t: min(p.min for p in ps) for t, ps in points.items()} == {
        t: min(values(ms)) for t, ms in grouped.items()
    }
    assert {t: max(p.max for p in ps) for t, ps in points.items()} == {
        t: max(values(ms)) for t, ms in grouped.items()
    }


@summary_settings
@given(scenarios(), buckets)
@example(LORD_HOWE_FALL_BACK, Bucket.HOUR)
@example(LORD_HOWE_SPRING_FORWARD, Bucket.HOUR)
def test_summary_agrees_with_bucketing_by_local_wall_clock(
    scenario: tuple[ZoneInfo, list[EngagementMetric]], bucket: Bucket
) -> None:
    tz, metrics = scenario
    expected: dict[str, dict[datetime, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    for metric in metrics:
        start = expected_bucket_start(metric.recorded_at, bucket, tz)
        expected[metric.metric_type.value][start].append(metric.metric_value.value)
    actual = {
        t: {utc(p.start): (p.count, Fraction(p.sum), p.min, p.max) for p in ps}
        for t, ps in points_by_type(summary_of(metrics, bucket, tz)).items()
    }
    assert actual == {
        t: {s: (len(vs), sum(map(Fraction, vs)), min(vs), max(vs)) for s, vs in by_start.items()}
        for t, by_start in expected.items()
    }


@summary_settings
@given(scenarios(), buckets)
@example(LORD_HOWE_FALL_BACK, Bucket.HOUR)
@example(LORD_HOWE_SPRING_FORWARD, Bucket.HOUR)
def test_summarizing_fifteen_minute_rollups_agrees_with_summarizing_metrics(
    scenario: tuple[ZoneInfo, list[EngagementMetric]], bucket: Bucket
) -> None:
    tz, metrics = scenario
    rollups: dict[tuple[MetricType, datetime], list[Decimal]] = defaultdict(list)
    for metric in metrics:
        rollups[metric.metric_type, floor_to_quarter(metric.recorded_at)].append(
            metric.metric_value.value
        )
    with localcontext(prec=100):  # exact sums, as a database rollup keeps them
        aggregates = [
            Aggregate(
                metric_type=metric_type,
                start=start,
                count=len(vs),
                sum=sum(vs, Decimal(0)),
                min=min(vs),
                max=max(vs),
            )
            for (metric_type, start), vs in rollups.items()
        ]
    query = SummaryQuery(bucket=bucket, tz=tz)
    assert table(summarize(aggregates, query)) == table(summary_of(metrics, bucket, tz))


@given(
    st.integers(min_value=1, max_value=2**63 - 1),
    st.uuids(),
    st.sampled_from(TYPES),
    metric_values(),
    st.datetimes(min_value=datetime(1970, 1, 1), timezones=st.just(UTC)),
)
def test_aggregate_of_a_metric_is_an_aggregate_of_one(
    metric_id: int, user_id: object, metric_type: str, value: Decimal, moment: datetime
) -> None:
    metric = EngagementMetric(
        id=metric_id,
        user_id=user_id,
        metric_type=MetricType(metric_type),
        metric_value=MetricValue(value),
        recorded_at=moment,
    )
    aggregate = Aggregate.of(metric)
    assert aggregate.metric_type == MetricType(metric_type)
    assert aggregate.start == moment
    assert (aggregate.count, aggregate.sum, aggregate.min, aggregate.max) == (
        1,
        value,
        value,
        value,
    )


def test_summary_of_nothing_has_no_series() -> None:
    for bucket in Bucket:
        assert summary_of([], bucket, BERLIN) == []


# --- bucket boundaries ----------------------------------------------------------


@summary_settings
@given(scenarios(), buckets)
@example(LORD_HOWE_FALL_BACK, Bucket.HOUR)
@example(LORD_HOWE_SPRING_FORWARD, Bucket.HOUR)
def test_each_metric_lies_between_its_bucket_start_and_the_next_bucket_start(
    scenario: tuple[ZoneInfo, list[EngagementMetric]], bucket: Bucket
) -> None:
    tz, metrics = scenario
    grouped = metrics_by_type(metrics)
    for series in summary_of(metrics, bucket, tz):
        starts = [utc(p.start) for p in series.points]
        for start, following in zip(starts, [*starts[1:], None], strict=True):
            members = [
                m.recorded_at
                for m in grouped[series.metric_type.value]
                if bucket_start(m.recorded_at, bucket, tz) == start
            ]
            end = next_bucket_start(start, bucket, tz)
            if following is not None:
                end = min(end, following)
            assert members, f"bucket {start} holds no metric"
            assert all(start <= moment < end for moment in members), (start, end, members)


@summary_settings
@given(zones_and_moments, buckets)
@example((LORD_HOWE, datetime(2024, 4, 6, 15, 15, tzinfo=UTC)), Bucket.HOUR)
@example((BERLIN, BERLIN_FALL_BACK + timedelta(minutes=59)), Bucket.HOUR)
def test_bucket_start_is_idempotent(
    zone_and_moment: tuple[ZoneInfo, datetime], bucket: Bucket
) -> None:
    tz, moment = zone_and_moment
    start = bucket_start(moment, bucket, tz)
    assert bucket_start(start, bucket, tz) == start


@summary_settings
@given(scenarios())
@example(LORD_HOWE_FALL_BACK)
@example(LORD_HOWE_SPRING_FORWARD)
def test_hour_buckets_start_on_the_local_hour(
    scenario: tuple[ZoneInfo, list[EngagementMetric]],
) -> None:
    tz, metrics = scenario
    for series in summary_of(metrics, Bucket.HOUR, tz):
        for point in series.points:
            assert on_the_local_hour(point.start, tz), point.start


@summary_settings
@given(scenarios())
def test_day_buckets_start_at_the_first_instant_of_a_local_date(
    scenario: tuple[ZoneInfo, list[EngagementMetric]],
) -> None:
    tz, metrics = scenario
    for series in summary_of(metrics, Bucket.DAY, tz):
        for point in series.points:
            day = local_date(point.start, tz)
            assert local_date(utc(point.start) - MICROSECOND, tz) < day
            midnight = datetime.combine(day, time(0), tzinfo=tz)
            if utc(midnight).astimezone(tz).replace(tzinfo=None) == midnight.replace(tzinfo=None):
                assert point.start.astimezone(tz).time() == time(0)


@summary_settings
@given(scenarios())
def test_week_buckets_start_at_the_first_instant_of_a_local_monday(
    scenario: tuple[ZoneInfo, list[EngagementMetric]],
) -> None:
    tz, metrics = scenario
    for series in summary_of(metrics, Bucket.WEEK, tz):
        for point in series.points:
            day = local_date(point.start, tz)
            assert day.weekday() == 0
            assert local_date(utc(point.start) - MICROSECOND, tz) < day


@summary_settings
@given(scenarios(), buckets)
def test_points_ascend_by_start_and_series_by_metric_type(
    scenario: tuple[ZoneInfo, list[EngagementMetric]], bucket: Bucket
) -> None:
    tz, metrics = scenario
    series = summary_of(metrics, bucket, tz)
    types = [s.metric_type for s in series]
    assert types == sorted(types)
    assert len(set(types)) == len(types)
    for one in series:
        starts = [utc(p.start) for p in one.points]
        assert starts == sorted(starts)
        assert len(set(starts)) == len(starts)
        assert all(p.count > 0 for p in one.points)


@summary_settings
@given(scenarios(), buckets)
def test_points_start_in_the_query_zone(
    scenario: tuple[ZoneInfo, list[EngagementMetric]], bucket: Bucket
) -> None:
    tz, metrics = scenario
    for series in summary_of(metrics, bucket, tz):
        for point in series.points:
            assert point.start.tzinfo is tz
            assert point.start.utcoffset() == tz.utcoffset(point.start)


# --- Berlin's DST days, by example ----------------------------------------------


def test_berlin_fall_back_hours_are_separate_buckets() -> None:
    first, second = BERLIN_FALL_BACK - timedelta(hours=1), BERLIN_FALL_BACK
    assert first.astimezone(BERLIN).hour == second.astimezone(BERLIN).hour == 2
    assert bucket_start(first + timedelta(minutes=30), Bucket.HOUR, BERLIN) == first
    assert bucket_start(second + timedelta(minutes=30), Bucket.HOUR, BERLIN) == second
    metrics = [metric_at("2024-10-27T00:30Z", 1), metric_at("2024-10-27T01:30Z", 2)]
    (series,) = summary_of(metrics, Bucket.HOUR, BERLIN)
    assert [(utc(p.start), p.count) for p in series.points] == [(first, 1), (second, 1)]
    assert [p.start.utcoffset() for p in series.points] == [timedelta(hours=2), timedelta(hours=1)]


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2024, 3, 31), 23), (date(2024, 10, 27), 25), (date(2024, 7, 1), 24)],
)
def test_berlin_days_last_23_hours_at_spring_forward_and_25_at_fall_back(
    day: date, hours: int
) -> None:
    noon = datetime.combine(day, time(12), tzinfo=BERLIN)
    start = bucket_start(noon, Bucket.DAY, BERLIN)
    next_start = bucket_start(noon + timedelta(days=1), Bucket.DAY, BERLIN)
    assert next_start - start == timedelta(hours=hours)
    assert start == start_of_local_date(day, BERLIN)
    assert start.astimezone(BERLIN).replace(tzinfo=None) == datetime.combine(day, time(0))


@pytest.mark.parametrize(
    ("day", "first_local_time"),
    [(date(2022, 9, 11), time(1)), (date(2024, 9, 8), time(1)), (date(2024, 4, 7), time(0))],
)
def test_santiago_day_starts_at_midnight_or_where_the_skipped_midnight_ends(
    day: date, first_local_time: time
) -> None:
    santiago = ZoneInfo("America/Santiago")
    start = start_of_local_date(day, santiago)
    assert start.astimezone(santiago).date() == day
    assert start.astimezone(santiago).time() == first_local_time
    assert local_date(start - MICROSECOND, santiago) < day


# --- SummaryQuery ---------------------------------------------------------------


@given(st.sampled_from([*Bucket, *(b.value for b in Bucket)]))
def test_summary_query_accepts_every_bucket_by_name(bucket: object) -> None:
    assert SummaryQuery(bucket=bucket).bucket is Bucket(bucket)


@given(st.one_of(st.text(), st.none(), st.integers(), st.booleans()))
@example("HOUR")
@example("Day")
@example(" week")
@example("month")
def test_summary_query_refuses_any_other_bucket(raw: object) -> None:
    assume(raw not in {"hour", "day", "week"})
    with pytest.raises(ValidationFailed) as caught:
        SummaryQuery(bucket=raw)
    assert [e.field for e in caught.value.errors] == ["bucket"]


# A zoneinfo folder may also hold "localtime" and "posixrules" (Debian's links to
# /etc/localtime and a POSIX rules file): files, not IANA zone names, so not drawn.
IANA_ZONE_NAMES = frozenset(available_timezones() | {"UTC"}) - {"localtime", "posixrules"}


@given(st.sampled_from(sorted(IANA_ZONE_NAMES)))
def test_summary_query_accepts_every_iana_zone_name(name: str) -> None:
    assert SummaryQuery(tz=name).tz == ZoneInfo(name)


@given(st.one_of(st.text(), st.none(), st.integers()))
@example("europe/berlin")
@example("Europe/Berlin ")
@example("../../etc/passwd")
@example("+02:00")
@example("")
def test_summary_query_refuses_anything_but_an_iana_zone_name(raw: object) -> None:
    assume(raw not in IANA_ZONE_NAMES)
    with pytest.raises(ValidationFailed) as caught:
        SummaryQuery(tz=raw)
    assert [e.field for e in caught.value.errors] == ["tz"]
