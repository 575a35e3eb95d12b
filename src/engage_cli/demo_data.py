"""Synthetic engagement metrics for the demo account: a range of days that looks lived in.

Pure functions of a seed and a time range. Events (page views, sessions,
sign-ups, purchases) arrive as a Poisson process whose hourly rate follows the
hour of the day, the day of the week, a growth trend, a day-to-day mood and
the odd campaign day; session lengths and purchase amounts are log-normal.
The same seed, range and time zone give the same metrics.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import NamedTuple

from attrs import frozen

MAX_DAYS = 3650
HOUR = timedelta(hours=1)
MICROSECONDS_PER_HOUR = 3_600_000_000
YEARLY_GROWTH = 1.8  # the rate a year ago was 1/1.8 of today's
MOOD_SIGMA = 0.12  # day-to-day spread of every rate (log-normal)
CAMPAIGN_CHANCE = 0.02  # share of days with a campaign
CAMPAIGN_BOOST = 1.8
ONE = Decimal(1)
CENT = Decimal("0.01")


class SyntheticMetric(NamedTuple):
    metric_type: str
    metric_value: Decimal
    recorded_at: datetime  # UTC


def _daily_profile(hour: int) -> float:
    """Activity by local hour: a midday peak, an evening one and quiet nights."""
    midday = math.exp(-(((hour - 12.5) / 3.5) ** 2))
    evening = 0.6 * math.exp(-(((hour - 20.5) / 2.0) ** 2))
    return 0.15 + midday + evening


_PROFILE_MEAN = sum(_daily_profile(h) for h in range(24)) / 24
DAILY_PROFILE = tuple(_daily_profile(h) / _PROFILE_MEAN for h in range(24))  # mean 1
WEEKLY_PROFILE = (1.1, 1.12, 1.1, 1.05, 0.95, 0.62, 0.58)  # Monday first


def _session_seconds(rng: random.Random, weekend: bool) -> Decimal:
    seconds = rng.lognormvariate(math.log(150), 0.8) * (1.3 if weekend else 1.0)
    return Decimal(min(max(round(seconds), 1), 4 * 3600))


def _purchase_value(rng: random.Random, weekend: bool) -> Decimal:
    amount = max(rng.lognormvariate(math.log(32), 0.6) * (1.1 if weekend else 1.0), 0.99)
    return Decimal(f"{amount:.2f}")


def _one(rng: random.Random, weekend: bool) -> Decimal:
    return ONE


@frozen
class Stream:
    """One metric type: its events per hour on an average day today, and its values."""

    metric_type: str
    per_hour: float
    value: Callable[[random.Random, bool], Decimal]


STREAMS = (
    Stream("page_view", 4.0, _one),
    Stream("session_seconds", 0.8, _session_seconds),
    Stream("signup", 0.06, _one),
    Stream("purchase_value", 0.12, _purchase_value),
)
METRIC_TYPES = tuple(s.metric_type for s in STREAMS)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: exact, and quick for the small means of one hour's events."""
    limit = math.exp(-mean)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def demo_metrics(
    *, end: datetime, days: int, seed: int, tz: tzinfo = UTC
) -> Iterator[SyntheticMetric]:
    """Metrics recorded in ``[end - days, end)``, hour by hour, oldest first.

    ``tz`` is where the audience lives: its hours and weekdays set the rhythm.
    """
    if end.tzinfo is None:
        raise ValueError("end must carry a time zone")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}")
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed; no secret
    end = end.astimezone(UTC)
    start = end - timedelta(days=days)
    current_day, mood = None, 1.0
    for step in range(days * 24):
        hour_start = start + step * HOUR
        local = hour_start.astimezone(tz)
        if local.date() != current_day:
            current_day = local.date()
            mood = rng.lognormvariate(0.0, MOOD_SIGMA)
            if rng.random() < CAMPAIGN_CHANCE:
                mood *= CAMPAIGN_BOOST
        weekend = local.weekday() >= 5
        years_ago = (end - hour_start) / timedelta(days=365)
        rate = (
            DAILY_PROFILE[local.hour]
            * WEEKLY_PROFILE[local.weekday()]
            * YEARLY_GROWTH ** (-years_ago)
            * mood
        )
        for stream in STREAMS:
            count = _poisson(rng, stream.per_hour * rate)
            if count == 0:
                continue
            # Distinct moments: a backfill skips a row equal to one already stored.
            offsets = sorted(rng.sample(range(MICROSECONDS_PER_HOUR), count))
            for offset in offsets:
                yield SyntheticMetric(
                    stream.metric_type,
                    stream.value(rng, weekend),
                    hour_start + timedelta(microseconds=offset),
                )
