"""Recording and listing metrics: over PostgreSQL and the fakes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from engage_core.testing import FakeClock

pytestmark = pytest.mark.parametrize("storage", ["postgres", "memory"])

Problem = Callable[..., dict[str, Any]]
METRICS = "/api/dashboard/metrics"
BATCH = "/api/dashboard/metrics/batch"


def at(moment: datetime) -> str:
    return moment.isoformat()


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
async def ada(api: Any) -> dict[str, str]:
    auth: dict[str, str] = await api.new_user("ada@example.com")
    return auth


@pytest.fixture
def past(clock: FakeClock) -> datetime:
    """A day before now: room for a series of metrics that are not in the future."""
    return clock.now() - timedelta(days=1)


# --- recording one ---------------------------------------------------------------------


async def test_recording_a_metric_answers_the_stored_metric(
    client: httpx.AsyncClient, ada: dict[str, str], past: datetime
) -> None:
    response = await client.post(
        METRICS,
        json={"metric_type": "page_view", "metric_value": 12.5, "recorded_at": at(past)},
        headers=ada,
    )

    assert response.status_code == 201
    body = response.json()
    assert body.keys() == {"id", "metric_type", "metric_value", "recorded_at"}
    assert isinstance(body["id"], int)
    assert body["metric_type"] == "page_view"
    assert body["metric_value"] == 12.5
    assert moment(body["recorded_at"]) == past


async def test_recorded_at_defaults_to_now(
    client: httpx.AsyncClient, ada: dict[str, str], clock: FakeClock
) -> None:
    response = await client.post(
        METRICS, json={"metric_type": "page_view", "metric_value": 1}, headers=ada
    )

    assert response.status_code == 201
    assert moment(response.json()["recorded_at"]) == clock.now()


async def test_recorded_at_keeps_the_instant_of_any_offset(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    response = await client.post(
        METRICS,
        json={
            "metric_type": "page_view",
            "metric_value": 1,
            "recorded_at": "2026-03-29T01:30:00+02:00",
        },
        headers=ada,
    )

    assert response.status_code == 201
    assert moment(response.json()["recorded_at"]) == datetime(2026, 3, 28, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (0.1, "0.1"),
        ("12.50", "12.5"),
        ("999999999999999.99999", "999999999999999.99999"),
        (-999999999999999, "-999999999999999"),
        ("1e3", "1000"),
        (0, "0"),
    ],
)
async def test_metric_values_are_kept_exactly(
    client: httpx.AsyncClient,
    ada: dict[str, str],
    decimal_json: Callable[[httpx.Response], Any],
    sent: object,
    stored: str,
) -> None:
    response = await client.post(
        METRICS, json={"metric_type": "amount", "metric_value": sent}, headers=ada
    )

    assert response.status_code == 201, response.text
    assert decimal_json(response)["metric_value"] == Decimal(stored)
    listed = await client.get(METRICS, headers=ada)
    assert decimal_json(listed)["items"][0]["metric_value"] == Decimal(stored)


@pytest.mark.parametrize(
    "metric_type", ["a", "page_view", "video.play", "api:call-1", "9lives", "x" * 100]
)
async def test_metric_types_of_the_allowed_alphabet_are_accepted(
    client: httpx.AsyncClient, ada: dict[str, str], metric_type: str
) -> None:
    response = await client.post(
        METRICS, json={"metric_type": metric_type, "metric_value": 1}, headers=ada
    )

    assert response.status_code == 201
    assert response.json()["metric_type"] == metric_type


@pytest.mark.parametrize(
    ("metric", "fields"),
    [
        ({"metric_type": "", "metric_value": 1}, ["metric_type"]),
        ({"metric_type": "x" * 101, "metric_value": 1}, ["metric_type"]),
        ({"metric_type": "_views", "metric_value": 1}, ["metric_type"]),
        ({"metric_type": "page views", "metric_value": 1}, ["metric_type"]),
        ({"metric_type": "vues/été", "metric_value": 1}, ["metric_type"]),
        ({"metric_type": "views", "metric_value": 10**15}, ["metric_value"]),
        ({"metric_type": "views", "metric_value": -(10**15)}, ["metric_value"]),
        ({"metric_type": "views", "metric_value": "1e15"}, ["metric_value"]),
        ({"metric_type": "views", "metric_value": "NaN"}, ["metric_value"]),
        ({"metric_type": "views", "metric_value": "Infinity"}, ["metric_value"]),
        ({"metric_type": "views", "metric_value": "twelve"}, ["metric_value"]),
        ({"metric_type": "views", "metric_value": True}, ["metric_value"]),
        ({"metric_type": "views", "metric_value": None}, ["metric_value"]),
        ({"metric_type": "views", "metric_value": [1]}, ["metric_value"]),
        ({"metric_type": "views", "metric_value": {"v": 1}}, ["metric_value"]),
        ({"metric_type": 7, "metric_value": 1}, ["metric_type"]),
        ({"metric_value": 1}, ["metric_type"]),
        ({"metric_type": "views"}, ["metric_value"]),
        (
            {"metric_type": "views", "metric_value": 1, "recorded_at": "2026-01-01T00:00:00"},
            ["recorded_at"],
        ),
        ({"metric_type": "views", "metric_value": 1, "recorded_at": "yesterday"}, ["recorded_at"]),
        ({"metric_type": "views", "metric_value": 1, "recorded_at": 1767225600}, ["recorded_at"]),
        ({"metric_type": "views", "metric_value": 1, "colour": "red"}, ["colour"]),
        ({"metric_type": "_", "metric_value": 1e16}, ["metric_type", "metric_value"]),
    ],
)
async def test_a_bad_metric_is_refused_naming_its_fields(
    client: httpx.AsyncClient,
    ada: dict[str, str],
    expect_problem: Problem,
    metric: dict[str, Any],
    fields: list[str],
) -> None:
    response = await client.post(METRICS, json=metric, headers=ada)

    expect_problem(response, 422, fields=fields)
    assert (await client.get(METRICS, headers=ada)).json()["items"] == []


async def test_recorded_at_may_be_up_to_five_minutes_ahead_not_more(
    client: httpx.AsyncClient, ada: dict[str, str], clock: FakeClock, expect_problem: Problem
) -> None:
    soon = clock.now() + timedelta(minutes=4, seconds=59)
    later = clock.now() + timedelta(minutes=5, seconds=1)

    accepted = await client.post(
        METRICS,
        json={"metric_type": "views", "metric_value": 1, "recorded_at": at(soon)},
        headers=ada,
    )
    refused = await client.post(
        METRICS,
        json={"metric_type": "views", "metric_value": 1, "recorded_at": at(later)},
        headers=ada,
    )

    assert accepted.status_code == 201
    expect_problem(refused, 422, fields=["recorded_at"])


async def test_recording_needs_authentication(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    response = await client.post(METRICS, json={"metric_type": "views", "metric_value": 1})

    expect_problem(response, 401)


async def test_a_browser_records_with_its_cookie_and_csrf_token(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str]
) -> None:
    await api.log_in("ada@example.com")

    response = await client.post(
        METRICS, json={"metric_type": "views", "metric_value": 1}, headers=api.csrf(client)
    )

    assert response.status_code == 201


# --- batches ---------------------------------------------------------------------------


async def test_a_batch_stores_every_item(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], past: datetime
) -> None:
    items = [
        {"metric_type": "views", "metric_value": n, "recorded_at": at(past + timedelta(minutes=n))}
        for n in range(1000)
    ]

    response = await client.post(BATCH, json={"items": items}, headers=ada)

    assert response.status_code == 201
    assert response.json() == {"inserted": 1000}
    stored = await api.list_all(ada, limit=500)
    assert sorted(m["metric_value"] for m in stored) == list(range(1000))


async def test_a_batch_of_1001_is_refused_and_stores_nothing(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    items = [{"metric_type": "views", "metric_value": 1}] * 1001

    response = await client.post(BATCH, json={"items": items}, headers=ada)

    expect_problem(response, 422, fields=["items"])
    assert await api.list_all(ada) == []


async def test_an_empty_batch_is_refused(
    client: httpx.AsyncClient, ada: dict[str, str], expect_problem: Problem
) -> None:
    response = await client.post(BATCH, json={"items": []}, headers=ada)

    expect_problem(response, 422, fields=["items"])


async def test_one_bad_item_stores_nothing_and_is_named(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    items: list[dict[str, Any]] = [{"metric_type": "views", "metric_value": 1}] * 10
    items = [*items[:7], {"metric_type": "views", "metric_value": 1e16}, *items[7:]]
    items.append({"metric_type": "bad type", "metric_value": 1})

    response = await client.post(BATCH, json={"items": items}, headers=ada)

    expect_problem(response, 422, fields=["items.7.metric_value", "items.11.metric_type"])
    assert await api.list_all(ada) == []


async def test_a_batch_item_of_the_wrong_json_type_is_named(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    items: list[dict[str, Any]] = [{"metric_type": "views", "metric_value": 1}] * 3
    items[2] = {"metric_type": "views", "metric_value": False}

    response = await client.post(BATCH, json={"items": items}, headers=ada)

    expect_problem(response, 422, fields=["items.2.metric_value"])
    assert await api.list_all(ada) == []


# --- listing ---------------------------------------------------------------------------


async def test_metrics_are_listed_newest_first(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], past: datetime
) -> None:
    for minutes in (5, 1, 9, 3):
        await api.record(
            ada,
            metric_type="views",
            metric_value=minutes,
            recorded_at=at(past + timedelta(minutes=minutes)),
        )

    response = await client.get(METRICS, headers=ada)

    assert response.status_code == 200
    body = response.json()
    assert body.keys() == {"items", "next_cursor"}
    assert body["next_cursor"] is None
    assert [m["metric_value"] for m in body["items"]] == [9, 5, 3, 1]
    assert all(
        m.keys() == {"id", "metric_type", "metric_value", "recorded_at"} for m in body["items"]
    )


async def test_listing_filters_by_type_and_time(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], past: datetime
) -> None:
    await api.record_batch(
        ada,
        [
            {
                "metric_type": kind,
                "metric_value": hour,
                "recorded_at": at(past + timedelta(hours=hour)),
            }
            for hour in range(6)
            for kind in ("views", "clicks")
        ],
    )
    since = at(past + timedelta(hours=1, minutes=30))
    until = at(past + timedelta(hours=4, minutes=30))

    by_type = await client.get(METRICS, params={"metric_type": "clicks"}, headers=ada)
    by_time = await client.get(METRICS, params={"since": since, "until": until}, headers=ada)
    by_both = await client.get(
        METRICS, params={"metric_type": "views", "since": since}, headers=ada
    )

    assert [(m["metric_type"], m["metric_value"]) for m in by_type.json()["items"]] == [
        ("clicks", h) for h in (5, 4, 3, 2, 1, 0)
    ]
    assert sorted((m["metric_value"], m["metric_type"]) for m in by_time.json()["items"]) == [
        (h, k) for h in (2, 3, 4) for k in ("clicks", "views")
    ]
    assert [m["metric_value"] for m in by_both.json()["items"]] == [5, 4, 3, 2]


async def test_the_default_page_holds_50_and_limit_goes_up_to_500(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str]
) -> None:
    await api.record_batch(ada, [{"metric_type": "views", "metric_value": n} for n in range(501)])

    default = await client.get(METRICS, headers=ada)
    one = await client.get(METRICS, params={"limit": 1}, headers=ada)
    most = await client.get(METRICS, params={"limit": 500}, headers=ada)

    assert len(default.json()["items"]) == 50
    assert len(one.json()["items"]) == 1
    assert len(most.json()["items"]) == 500
    assert most.json()["next_cursor"] is not None


@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten", "1.5", "99999999999999999999999"])
async def test_a_limit_outside_1_to_500_is_400(
    client: httpx.AsyncClient, ada: dict[str, str], expect_problem: Problem, limit: str
) -> None:
    response = await client.get(METRICS, params={"limit": limit}, headers=ada)

    expect_problem(response, 400, fields=["limit"])


async def test_cursor_pagination_visits_every_metric_once(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], past: datetime
) -> None:
    # Ties on recorded_at straddle page boundaries: the order breaks them by id.
    await api.record_batch(
        ada,
        [
            {
                "metric_type": "views",
                "metric_value": n,
                "recorded_at": at(past + timedelta(seconds=n // 4)),
            }
            for n in range(37)
        ],
    )

    pages = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(METRICS, params=params, headers=ada)).json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    seen = [m["id"] for page in pages for m in page]
    assert len(pages) == 8
    assert len(seen) == len(set(seen)) == 37
    order = [(moment(m["recorded_at"]), m["id"]) for page in pages for m in page]
    assert order == sorted(order, reverse=True)


async def test_a_cursor_from_another_user_is_400(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    await api.record_batch(ada, [{"metric_type": "views", "metric_value": n} for n in range(3)])
    adas_cursor = (await client.get(METRICS, params={"limit": 1}, headers=ada)).json()[
        "next_cursor"
    ]
    bob = await api.new_user("bob@example.com")
    await api.record_batch(bob, [{"metric_type": "views", "metric_value": n} for n in range(3)])

    response = await client.get(METRICS, params={"limit": 1, "cursor": adas_cursor}, headers=bob)

    expect_problem(response, 400, fields=["cursor"])


async def test_users_see_only_their_own_metrics(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str]
) -> None:
    mine = await api.record(ada, metric_type="views", metric_value=1)
    bob = await api.new_user("bob@example.com")
    theirs = await api.record(bob, metric_type="views", metric_value=2)

    assert await api.list_all(ada) == [mine]
    assert await api.list_all(bob) == [theirs]


async def test_listing_needs_authentication(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    expect_problem(await client.get(METRICS), 401)
