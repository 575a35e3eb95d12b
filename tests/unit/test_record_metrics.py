"""Recording engagement metrics: one at a time, or a batch of up to 1000, all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from engage_core import EngagementMetric, MetricType, ValidationFailed

FIVE_MINUTES = timedelta(minutes=5)


async def stored(metrics, user_id):
    """Every metric the user has, newest first."""
    items = []
    cursor = None
    for _ in range(10):
        page = await metrics.list(user_id, limit=500, cursor=cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor
    pytest.fail("paging did not end after 10 pages")


# --- record -------------------------------------------------------------------------------


async def test_record_returns_the_stored_metric(metrics, stranger_id):
    metric = await metrics.record(
        stranger_id,
        metric_type="video.play",
        metric_value="12.50",
        recorded_at="2026-01-01T13:30:00+02:00",
    )

    assert isinstance(metric, EngagementMetric)
    assert isinstance(metric.id, int)
    assert metric.user_id == stranger_id
    assert metric.metric_type == MetricType("video.play")
    assert isinstance(metric.metric_value.value, Decimal)
    assert metric.metric_value.value == Decimal("12.5")
    assert metric.recorded_at == datetime(2026, 1, 1, 11, 30, tzinfo=UTC)
    assert metric.recorded_at.utcoffset() == timedelta(0)


async def test_record_keeps_the_exact_decimal_of_a_float(metrics, stranger_id):
    metric = await metrics.record(stranger_id, metric_type="score", metric_value=0.1)

    assert metric.metric_value.value == Decimal("0.1")


async def test_record_accepts_an_aware_datetime_and_stores_it_in_utc(metrics, stranger_id):
    moment = datetime(2025, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=-4)))

    metric = await metrics.record(
        stranger_id, metric_type="page_view", metric_value=1, recorded_at=moment
    )

    assert metric.recorded_at == moment
    assert metric.recorded_at.tzinfo == UTC


async def test_recorded_at_defaults_to_now(metrics, stranger_id, clock):
    metric = await metrics.record(stranger_id, metric_type="page_view", metric_value=1)

    assert metric.recorded_at == clock.now()


async def test_each_recorded_metric_gets_a_new_id(metrics, stranger_id):
    first = await metrics.record(stranger_id, metric_type="page_view", metric_value=1)
    second = await metrics.record(stranger_id, metric_type="page_view", metric_value=1)

    assert first.id != second.id


async def test_a_recorded_metric_is_listed(metrics, stranger_id):
    metric = await metrics.record(stranger_id, metric_type="page_view", metric_value=3)

    assert (await metrics.list(stranger_id)).items == (metric,)


async def test_recorded_at_exactly_five_minutes_ahead_is_accepted(metrics, stranger_id, clock):
    metric = await metrics.record(
        stranger_id,
        metric_type="page_view",
        metric_value=1,
        recorded_at=clock.now() + FIVE_MINUTES,
    )

    assert metric.recorded_at == clock.now() + FIVE_MINUTES


async def test_recorded_at_more_than_five_minutes_ahead_is_refused(metrics, stranger_id, clock):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.record(
            stranger_id,
            metric_type="page_view",
            metric_value=1,
            recorded_at=clock.now() + FIVE_MINUTES + timedelta(microseconds=1),
        )

    assert [e.field for e in caught.value.errors] == ["recorded_at"]
    assert await stored(metrics, stranger_id) == []


async def test_record_reports_every_invalid_field_together(metrics, stranger_id):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.record(
            stranger_id,
            metric_type="has space",
            metric_value="NaN",
            recorded_at="2026-01-01T10:00:00",
        )

    assert {e.field for e in caught.value.errors} == {"metric_type", "metric_value", "recorded_at"}


@pytest.mark.parametrize(
    "metric_type", ["", "x" * 101, "_leading", "-leading", "has space", "emoji🙂", 7, None]
)
async def test_record_refuses_an_invalid_metric_type(metrics, stranger_id, metric_type):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.record(stranger_id, metric_type=metric_type, metric_value=1)

    assert [e.field for e in caught.value.errors] == ["metric_type"]


@pytest.mark.parametrize("metric_type", ["a", "x" * 100, "video.play", "api:call-1", "9_lives"])
async def test_record_accepts_a_valid_metric_type(metrics, stranger_id, metric_type):
    metric = await metrics.record(stranger_id, metric_type=metric_type, metric_value=1)

    assert metric.metric_type.value == metric_type


@pytest.mark.parametrize(
    "metric_value",
    [
        float("nan"),
        float("inf"),
        "Infinity",
        "NaN",
        True,
        10**15,
        -(10**15),
        "1e15",
        "abc",
        "",
        "  42 ",
        "1_000",
        None,
        [1],
        {"value": 1},
    ],
    ids=repr,
)
async def test_record_refuses_an_invalid_metric_value(metrics, stranger_id, metric_value):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.record(stranger_id, metric_type="page_view", metric_value=metric_value)

    assert [e.field for e in caught.value.errors] == ["metric_value"]


@pytest.mark.parametrize(
    ("metric_value", "expected"),
    [
        (0, Decimal(0)),
        (-3, Decimal(-3)),
        ("42", Decimal(42)),
        ("1.500", Decimal("1.5")),
        (10**15 - 1, Decimal(10**15 - 1)),
        ("-999999999999999.5", Decimal("-999999999999999.5")),
        (Decimal("2.25"), Decimal("2.25")),
    ],
    ids=repr,
)
async def test_record_accepts_a_finite_number_below_10_to_the_15(
    metrics, stranger_id, metric_value, expected
):
    metric = await metrics.record(stranger_id, metric_type="page_view", metric_value=metric_value)

    assert metric.metric_value.value == expected


@pytest.mark.parametrize(
    "recorded_at",
    [
        "2026-01-01T10:00:00",
        datetime(2026, 1, 1, 10),
        "yesterday",
        "",
        1767261600,
        "1969-12-31T23:59:59Z",
    ],
    ids=repr,
)
async def test_record_refuses_an_invalid_recorded_at(metrics, stranger_id, recorded_at):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.record(
            stranger_id, metric_type="page_view", metric_value=1, recorded_at=recorded_at
        )

    assert [e.field for e in caught.value.errors] == ["recorded_at"]


# --- record_batch -------------------------------------------------------------------------


def batch(size, clock):
    return [
        {
            "metric_type": "page_view",
            "metric_value": index,
            "recorded_at": (clock.now() - timedelta(seconds=index)).isoformat(),
        }
        for index in range(size)
    ]


@pytest.mark.parametrize("size", [0, 1001])
async def test_record_batch_refuses_an_empty_or_oversized_batch(metrics, stranger_id, clock, size):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.record_batch(stranger_id, batch(size, clock))

    assert [e.field for e in caught.value.errors] == ["items"]
    assert await stored(metrics, stranger_id) == []


@pytest.mark.parametrize("size", [1, 1000])
async def test_record_batch_stores_1_to_1000_metrics(metrics, stranger_id, clock, size):
    inserted = await metrics.record_batch(stranger_id, batch(size, clock))

    assert inserted == size
    kept = await stored(metrics, stranger_id)
    assert len(kept) == size
    assert sorted(m.metric_value.value for m in kept) == list(range(size))


async def test_record_batch_defaults_recorded_at_to_now(metrics, stranger_id, clock):
    await metrics.record_batch(stranger_id, [{"metric_type": "page_view", "metric_value": 1}])

    [metric] = await stored(metrics, stranger_id)
    assert metric.recorded_at == clock.now()


async def test_one_bad_item_names_its_fields_and_stores_nothing(metrics, stranger_id, clock):
    items = batch(5, clock)
    items[2] = {"metric_type": "bad type", "metric_value": "lots", "recorded_at": None}

    with pytest.raises(ValidationFailed) as caught:
        await metrics.record_batch(stranger_id, items)

    assert {e.field for e in caught.value.errors} == {
        "items.2.metric_type",
        "items.2.metric_value",
    }
    assert await stored(metrics, stranger_id) == []


async def test_record_batch_reports_every_bad_item(metrics, stranger_id, clock):
    items = batch(1000, clock)
    items[0]["metric_value"] = float("inf")
    items[500]["recorded_at"] = (clock.now() + timedelta(hours=1)).isoformat()
    items[999]["metric_type"] = ""

    with pytest.raises(ValidationFailed) as caught:
        await metrics.record_batch(stranger_id, items)

    assert [e.field for e in caught.value.errors] == [
        "items.0.metric_value",
        "items.500.recorded_at",
        "items.999.metric_type",
    ]
    assert await stored(metrics, stranger_id) == []


async def test_a_batch_item_missing_its_fields_is_reported(metrics, stranger_id):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.record_batch(stranger_id, [{}])

    assert {e.field for e in caught.value.errors} == {"items.0.metric_type", "items.0.metric_value"}


async def test_a_batch_item_that_is_not_an_object_is_reported(metrics, stranger_id):
    items = [{"metric_type": "page_view", "metric_value": 1}, 42, "page_view", None]

    with pytest.raises(ValidationFailed) as caught:
        await metrics.record_batch(stranger_id, items)

    assert {e.field.split(".")[1] for e in caught.value.errors} == {"1", "2", "3"}
    assert all(e.field.startswith("items.") for e in caught.value.errors)
    assert await stored(metrics, stranger_id) == []
