"""Summaries: count, sum, avg, min and max per bucket (hour, day, week) and type, in a time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.parametrize("storage", ["postgres", "memory"])

SUMMARY = "/api/dashboard/summary"
Problem = Callable[..., dict[str, Any]]

# Monday 2026-01-05; Berlin is UTC+1 in January.
METRICS = [
    ("views", 7, "2026-01-04T12:00:00Z"),  # Sunday
    ("views", 1, "2026-01-05T22:30:00Z"),  # Monday 23:30 in Berlin
    ("views", 3, "2026-01-05T23:30:00Z"),  # Tuesday 00:30 in Berlin
    ("views", 5, "2026-01-06T10:00:00Z"),
    ("clicks", 2, "2026-01-05T22:45:00Z"),
]


def point(start: str, *values: int) -> dict[str, Any]:
    return {
        "start": datetime.fromisoformat(start),
        "count": len(values),
        "sum": sum(values),
        "min": min(values),
        "max": max(values),
    }


def series(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """metric_type → points, each with ``start`` parsed and ``avg`` checked then dropped."""
    result = {}
    for entry in body["series"]:
        points = []
        for p in entry["points"]:
            assert p.keys() == {"start", "count", "sum", "avg", "min", "max"}
            assert p["avg"] == pytest.approx(p["sum"] / p["count"])
            points.append({k: v for k, v in p.items() if k != "avg"})
            points[-1]["start"] = datetime.fromisoformat(p["start"])
        result[entry["metric_type"]] = points
    return result


def offsets(body: dict[str, Any]) -> set[timedelta | None]:
    return {
        datetime.fromisoformat(p["start"]).utcoffset()
        for entry in body["series"]
        for p in entry["points"]
    }


@pytest.fixture
async def ada(api: Any) -> dict[str, str]:
    auth: dict[str, str] = await api.new_user("ada@example.com")
    await api.record_batch(
        auth, [{"metric_type": t, "metric_value": v, "recorded_at": at} for t, v, at in METRICS]
    )
    return auth


async def test_the_default_summary_is_daily_in_utc(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.get(SUMMARY, headers=ada)

    assert response.status_code == 200
    body = response.json()
    assert body.keys() == {"bucket", "tz", "series"}
    assert (body["bucket"], body["tz"]) == ("day", "UTC")
    assert series(body) == {
        "clicks": [point("2026-01-05T00:00:00+00:00", 2)],
        "views": [
            point("2026-01-04T00:00:00+00:00", 7),
            point("2026-01-05T00:00:00+00:00", 1, 3),
            point("2026-01-06T00:00:00+00:00", 5),
        ],
    }


async def test_days_start_at_midnight_in_the_requested_zone(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.get(
        SUMMARY, params={"bucket": "day", "tz": "Europe/Berlin"}, headers=ada
    )

    assert response.status_code == 200
    body = response.json()
    assert body["tz"] == "Europe/Berlin"
    assert series(body)["views"] == [
        point("2026-01-04T00:00:00+01:00", 7),
        point("2026-01-05T00:00:00+01:00", 1),
        point("2026-01-06T00:00:00+01:00", 3, 5),
    ]
    assert offsets(body) == {timedelta(hours=1)}


async def test_hours_bucket_each_hour(client: httpx.AsyncClient, ada: dict[str, str]) -> None:
    response = await client.get(
        SUMMARY, params={"bucket": "hour", "metric_type": "views"}, headers=ada
    )

    assert response.status_code == 200
    assert response.json()["bucket"] == "hour"
    assert series(response.json()) == {
        "views": [
            point("2026-01-04T12:00:00+00:00", 7),
            point("2026-01-05T22:00:00+00:00", 1),
            point("2026-01-05T23:00:00+00:00", 3),
            point("2026-01-06T10:00:00+00:00", 5),
        ]
    }


async def test_weeks_start_on_monday_in_the_requested_zone(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    utc = await client.get(SUMMARY, params={"bucket": "week"}, headers=ada)
    berlin = await client.get(
        SUMMARY, params={"bucket": "week", "tz": "Europe/Berlin"}, headers=ada
    )

    assert series(utc.json())["views"] == [
        point("2025-12-29T00:00:00+00:00", 7),
        point("2026-01-05T00:00:00+00:00", 1, 3, 5),
    ]
    assert series(berlin.json())["views"] == [
        point("2025-12-29T00:00:00+01:00", 7),
        point("2026-01-05T00:00:00+01:00", 1, 3, 5),
    ]


async def test_days_across_a_daylight_saving_change_carry_their_own_offsets(
    client: httpx.AsyncClient, api: Any
) -> None:
    auth = await api.new_user("bob@example.com")
    # Berlin springs forward at 01:00Z on 2026-03-29: 23 hours that day.
    await api.record_batch(
        auth,
        [
            {"metric_type": "views", "metric_value": 1, "recorded_at": "2026-03-28T23:30:00Z"},
            {"metric_type": "views", "metric_value": 2, "recorded_at": "2026-03-29T21:30:00Z"},
            {"metric_type": "views", "metric_value": 4, "recorded_at": "2026-03-29T22:30:00Z"},
        ],
    )

    response = await client.get(
        SUMMARY, params={"bucket": "day", "tz": "Europe/Berlin"}, headers=auth
    )

    assert series(response.json())["views"] == [
        point("2026-03-29T00:00:00+01:00", 1, 2),
        point("2026-03-30T00:00:00+02:00", 4),
    ]


async def test_summary_filters_by_type_and_time(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.get(
        SUMMARY,
        params={
            "metric_type": "views",
            "since": "2026-01-05T00:00:00Z",
            "until": "2026-01-06T00:00:00Z",
        },
        headers=ada,
    )

    assert series(response.json()) == {"views": [point("2026-01-05T00:00:00+00:00", 1, 3)]}


@pytest.mark.parametrize("bucket", ["hour", "day", "week"])
async def test_the_buckets_add_up_to_the_whole(
    client: httpx.AsyncClient, ada: dict[str, str], bucket: str
) -> None:
    response = await client.get(
        SUMMARY, params={"bucket": bucket, "tz": "America/St_Johns"}, headers=ada
    )

    points = [p for entry in series(response.json()).values() for p in entry]
    assert sum(p["count"] for p in points) == len(METRICS)
    assert sum(p["sum"] for p in points) == sum(v for _, v, _ in METRICS)


async def test_the_average_is_exact_to_many_places(
    client: httpx.AsyncClient, api: Any, decimal_json: Callable[[httpx.Response], Any]
) -> None:
    auth = await api.new_user("bob@example.com")
    await api.record_batch(
        auth,
        [
            {"metric_type": "t", "metric_value": v, "recorded_at": "2026-01-05T10:00:00Z"}
            for v in (1, 2, 2)
        ],
    )

    response = await client.get(SUMMARY, headers=auth)

    (only,) = decimal_json(response)["series"][0]["points"]
    assert only["sum"] == 5
    assert abs(only["avg"] - Decimal(5) / 3) < Decimal("1e-15")


async def test_a_summary_of_nothing_has_no_series(client: httpx.AsyncClient, api: Any) -> None:
    auth = await api.new_user("bob@example.com")

    response = await client.get(SUMMARY, params={"bucket": "week"}, headers=auth)

    assert response.status_code == 200
    assert response.json() == {"bucket": "week", "tz": "UTC", "series": []}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bucket": "month"}, "bucket"),
        ({"bucket": "DAY"}, "bucket"),
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"tz": "x" * 65}, "tz"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"until": "last week"}, "until"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"metric_type": "no spaces"}, "metric_type"),
    ],
)
async def test_bad_summary_queries_are_400(
    client: httpx.AsyncClient,
    ada: dict[str, str],
    expect_problem: Problem,
    params: dict[str, str],
    field: str,
) -> None:
    response = await client.get(SUMMARY, params=params, headers=ada)

    expect_problem(response, 400, fields=[field])


async def test_summary_needs_authentication(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    expect_problem(await client.get(SUMMARY), 401)
