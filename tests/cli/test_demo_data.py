"""The demo's synthetic metrics: valid by the API's rules, in range, rhythmic, reproducible."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engage_cli.demo_data import METRIC_TYPES, SyntheticMetric, demo_metrics
from engage_core.model import MetricDraft

END = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday, on the hour


@pytest.fixture(scope="module")
def year() -> list[SyntheticMetric]:
    return list(demo_metrics(end=END, days=365, seed=42))


def page_views_per_day(metrics: list[SyntheticMetric]) -> dict[date, int]:
    return Counter(m.recorded_at.date() for m in metrics if m.metric_type == "page_view")


def test_a_year_is_every_metric_type_in_the_tens_of_thousands(
    year: list[SyntheticMetric],
) -> None:
    assert {m.metric_type for m in year} == set(METRIC_TYPES)
    assert 10_000 <= len(year) <= 60_000


def test_every_metric_passes_the_api_rules_and_lies_in_the_range(
    year: list[SyntheticMetric],
) -> None:
    for metric in year:
        draft = MetricDraft.parse(
            metric_type=metric.metric_type,
            metric_value=str(metric.metric_value),
            recorded_at=metric.recorded_at.isoformat(),
            now=END,
        )
        assert draft.metric_value.value == metric.metric_value
        assert END - timedelta(days=365) <= metric.recorded_at < END


def test_values_are_what_each_type_measures(year: list[SyntheticMetric]) -> None:
    values = defaultdict(list)
    for metric in year:
        values[metric.metric_type].append(metric.metric_value)
    assert set(values["page_view"]) == set(values["signup"]) == {1}
    seconds = values["session_seconds"]
    assert all(s == int(s) and 1 <= s <= 4 * 3600 for s in seconds)
    assert 60 < statistics.median(seconds) < 600
    amounts = values["purchase_value"]
    assert all(a >= Decimal("0.99") and a == a.quantize(Decimal("0.01")) for a in amounts)
    assert len(set(amounts)) > len(amounts) / 4, "amounts vary"


def test_no_two_metrics_of_a_type_share_a_moment(year: list[SyntheticMetric]) -> None:
    # A backfill would skip the second as already stored.
    assert len({(m.metric_type, m.recorded_at) for m in year}) == len(year)


def test_every_day_has_page_views_and_weekdays_have_more_than_weekends(
    year: list[SyntheticMetric],
) -> None:
    per_day = page_views_per_day(year)
    assert len(per_day) >= 365
    weekdays = [n for day, n in per_day.items() if day.weekday() < 5]
    weekends = [n for day, n in per_day.items() if day.weekday() >= 5]
    assert statistics.mean(weekdays) > 1.4 * statistics.mean(weekends)


def test_days_are_busier_than_nights_in_the_audience_time_zone() -> None:
    tokyo = timezone(timedelta(hours=9))
    for tz in (UTC, tokyo):
        metrics = demo_metrics(end=END, days=60, seed=1, tz=tz)
        hours = Counter(m.recorded_at.astimezone(tz).hour for m in metrics)
        assert sum(hours[h] for h in range(11, 15)) > 5 * sum(hours[h] for h in range(2, 6))


def test_the_latest_months_are_busier_than_the_first(year: list[SyntheticMetric]) -> None:
    quarter = END - timedelta(days=91)
    latest = sum(1 for m in year if m.recorded_at >= quarter)
    first = sum(1 for m in year if m.recorded_at < END - timedelta(days=365 - 91))
    assert latest > 1.3 * first


def test_days_differ_beyond_their_weekday(year: list[SyntheticMetric]) -> None:
    mondays = [n for day, n in page_views_per_day(year).items() if day.weekday() == 0]
    assert len(set(mondays)) > len(mondays) / 2


def test_the_same_seed_makes_the_same_metrics_and_another_seed_others() -> None:
    first = list(demo_metrics(end=END, days=30, seed=7))
    assert list(demo_metrics(end=END, days=30, seed=7)) == first
    assert list(demo_metrics(end=END, days=30, seed=8)) != first


@settings(max_examples=25)
@given(
    end=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    days=st.integers(1, 5),
    seed=st.integers(0, 2**64),
    offset=st.integers(-12, 14),
)
def test_any_range_gives_valid_metrics_within_it(
    end: datetime, days: int, seed: int, offset: int
) -> None:
    tz = timezone(timedelta(hours=offset))
    start = end - timedelta(days=days)
    slots = []
    for metric in demo_metrics(end=end, days=days, seed=seed, tz=tz):
        MetricDraft.parse(
            metric_type=metric.metric_type,
            metric_value=metric.metric_value,
            recorded_at=metric.recorded_at,
            now=end,
        )
        assert start <= metric.recorded_at < end
        assert metric.recorded_at.tzinfo is UTC
        slots.append((metric.recorded_at - start) // timedelta(hours=1))
    assert slots == sorted(slots), "hour by hour, oldest first"


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_a_range_outside_one_day_to_ten_years_is_refused(days: int) -> None:
    with pytest.raises(ValueError, match="days must be from 1 to 3650"):
        next(demo_metrics(end=END, days=days, seed=1))


def test_a_naive_end_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        next(demo_metrics(end=datetime(2026, 1, 1), days=1, seed=1))
