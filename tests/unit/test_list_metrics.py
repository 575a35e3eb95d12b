"""Listing a user's metrics: newest first, filtered, in keyset pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from engage_core import ValidationFailed

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def record(metrics, stranger_id):
    async def record(minutes, metric_type="page_view", value=1, user_id=None):
        return await metrics.record(
            user_id or stranger_id,
            metric_type=metric_type,
            metric_value=value,
            recorded_at=at(minutes),
        )

    return record


async def all_pages(metrics, user_id, **filters):
    """Every page from the first to the one without a next cursor (at most 100 of them)."""
    items, pages, cursor = [], [], None
    for _ in range(100):
        page = await metrics.list(user_id, cursor=cursor, **filters)
        pages.append(page)
        items.extend(page.items)
        if page.next_cursor is None:
            return items, pages
        cursor = page.next_cursor
    pytest.fail("paging did not end after 100 pages")


def newest_first(metrics):
    return sorted(metrics, key=lambda m: (m.recorded_at, m.id), reverse=True)


# --- order and filters --------------------------------------------------------------------


async def test_list_is_newest_first(metrics, stranger_id, record):
    middle = await record(10)
    newest = await record(20)
    oldest = await record(0)

    page = await metrics.list(stranger_id)

    assert page.items == (newest, middle, oldest)
    assert page.next_cursor is None


async def test_metrics_recorded_at_one_moment_are_listed_by_id_descending(
    metrics, stranger_id, record
):
    recorded = [await record(5) for _ in range(4)]

    page = await metrics.list(stranger_id)

    assert [m.id for m in page.items] == sorted((m.id for m in recorded), reverse=True)


async def test_list_of_a_user_without_metrics_is_empty(metrics, stranger_id):
    page = await metrics.list(stranger_id)

    assert page.items == ()
    assert page.next_cursor is None


async def test_list_filters_by_metric_type(metrics, stranger_id, record):
    view = await record(1, "page_view")
    await record(2, "video.play")

    page = await metrics.list(stranger_id, metric_type="page_view")

    assert page.items == (view,)


async def test_since_is_inclusive_and_until_exclusive(metrics, stranger_id, record):
    before, first, inside, last = [await record(m) for m in (0, 10, 15, 20)]

    page = await metrics.list(stranger_id, since=at(10), until=at(20))

    assert page.items == (inside, first)
    assert before not in page.items
    assert last not in page.items


async def test_since_and_until_accept_iso_strings_in_any_offset(metrics, stranger_id, record):
    await record(0)
    inside = await record(30)

    page = await metrics.list(
        stranger_id, since="2026-01-01T11:15:00+01:00", until="2026-01-01T06:00:00-05:00"
    )

    assert page.items == (inside,)


async def test_users_never_see_each_others_metrics(metrics, record, new_user_id):
    alice, bob = await new_user_id(), await new_user_id()
    alices = await record(1, user_id=alice)
    bobs = await record(2, user_id=bob)

    assert (await metrics.list(alice)).items == (alices,)
    assert (await metrics.list(bob)).items == (bobs,)


@pytest.mark.parametrize(("since", "until"), [(at(10), at(10)), (at(10), at(5))])
async def test_since_at_or_after_until_is_refused(metrics, stranger_id, since, until):
    with pytest.raises(ValidationFailed):
        await metrics.list(stranger_id, since=since, until=until)


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"metric_type": "bad type"}, "metric_type"),
        ({"since": "2026-01-01T10:00:00"}, "since"),
        ({"until": "not a date"}, "until"),
    ],
)
async def test_list_refuses_invalid_filters_naming_the_field(metrics, stranger_id, filters, field):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.list(stranger_id, **filters)

    assert [e.field for e in caught.value.errors] == [field]


# --- limit --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limit", [0, 501, -1, True, False, 5.0, "0", "five", "5.0", " 5", "9" * 5000], ids=repr
)
async def test_list_refuses_a_limit_outside_1_to_500(metrics, stranger_id, limit):
    with pytest.raises(ValidationFailed) as caught:
        await metrics.list(stranger_id, limit=limit)

    assert [e.field for e in caught.value.errors] == ["limit"]


async def test_list_takes_a_limit_as_the_decimal_text_a_query_sends(metrics, stranger_id, record):
    for minute in range(3):
        await record(minute)

    page = await metrics.list(stranger_id, limit="2")

    assert len(page.items) == 2


@pytest.mark.parametrize("limit", [1, 3, 500])
async def test_list_returns_at_most_limit_items(metrics, stranger_id, limit):
    await metrics.record_batch(stranger_id, [{"metric_type": "page_view", "metric_value": 1}] * 501)

    page = await metrics.list(stranger_id, limit=limit)

    assert len(page.items) == limit
    assert page.next_cursor is not None


async def test_list_returns_50_items_by_default(metrics, stranger_id):
    await metrics.record_batch(stranger_id, [{"metric_type": "page_view", "metric_value": 1}] * 51)

    page = await metrics.list(stranger_id)

    assert len(page.items) == 50


# --- cursors ------------------------------------------------------------------------------


@pytest.fixture
async def crowded(metrics, stranger_id, clock):
    """23 metrics of two types, most of them sharing a few moments, some a microsecond apart."""
    tick = timedelta(microseconds=1)
    moments = [at(0)] * 9 + [at(1)] * 5 + [at(1) + tick] * 2 + [at(2) - tick] * 2
    moments += [at(m) for m in (3, 4, 5, 6, 7)]
    items = [
        {
            "metric_type": "page_view" if index % 3 else "video.play",
            "metric_value": index,
            "recorded_at": moment,
        }
        for index, moment in enumerate(moments)
    ]
    await metrics.record_batch(stranger_id, items)
    return (await metrics.list(stranger_id, limit=500)).items


@pytest.mark.parametrize("limit", [1, 2, 4, 5, 7, 22, 23, 24])
async def test_cursors_page_through_everything_exactly_once(metrics, stranger_id, crowded, limit):
    items, pages = await all_pages(metrics, stranger_id, limit=limit)

    assert len(crowded) == 23
    assert items == newest_first(crowded)
    assert len({m.id for m in items}) == len(items)
    assert all(len(p.items) == limit for p in pages[:-1])
    assert pages[-1].next_cursor is None
    assert len(pages) == -(-23 // limit)


async def test_cursors_page_through_a_filtered_list(metrics, stranger_id, crowded):
    items, _ = await all_pages(
        metrics, stranger_id, limit=2, metric_type="page_view", since=at(1), until=at(6)
    )

    expected = [
        m
        for m in newest_first(crowded)
        if m.metric_type.value == "page_view" and at(1) <= m.recorded_at < at(6)
    ]
    assert expected
    assert items == expected


async def test_the_last_page_has_no_next_cursor_even_when_it_is_full(metrics, stranger_id, record):
    for minutes in range(4):
        await record(minutes)

    first = await metrics.list(stranger_id, limit=2)
    last = await metrics.list(stranger_id, limit=2, cursor=first.next_cursor)

    assert len(last.items) == 2
    assert last.next_cursor is None


async def test_a_cursor_may_be_used_with_another_limit(metrics, stranger_id, crowded):
    first = await metrics.list(stranger_id, limit=3)

    rest = await metrics.list(stranger_id, limit=500, cursor=first.next_cursor)

    assert [*first.items, *rest.items] == newest_first(crowded)


async def test_a_cursor_from_another_user_is_refused(metrics, stranger_id, crowded):
    page = await metrics.list(stranger_id, limit=2)

    with pytest.raises(ValidationFailed) as caught:
        await metrics.list(uuid4(), limit=2, cursor=page.next_cursor)

    assert [e.field for e in caught.value.errors] == ["cursor"]


@pytest.mark.parametrize(
    ("issued_with", "used_with"),
    [
        ({}, {"metric_type": "page_view"}),
        ({"metric_type": "page_view"}, {"metric_type": "video.play"}),
        ({"metric_type": "page_view"}, {}),
        ({}, {"since": at(0)}),
        ({"since": at(0)}, {"since": at(1)}),
        ({}, {"until": at(8)}),
        ({"since": at(0)}, {"until": at(0)}),
        ({}, {"metric_type": "None"}),
    ],
    ids=[
        "type-added",
        "type-changed",
        "type-dropped",
        "since-added",
        "since-changed",
        "until-added",
        "since-became-until",
        "type-named-None-added",
    ],
)
async def test_a_cursor_used_with_other_filters_is_refused(
    metrics, stranger_id, crowded, issued_with, used_with
):
    page = await metrics.list(stranger_id, limit=1, **issued_with)
    assert page.next_cursor is not None

    with pytest.raises(ValidationFailed) as caught:
        await metrics.list(stranger_id, limit=1, cursor=page.next_cursor, **used_with)

    assert [e.field for e in caught.value.errors] == ["cursor"]


async def test_a_cursor_for_the_same_instant_in_another_offset_is_accepted(
    metrics, stranger_id, crowded
):
    page = await metrics.list(stranger_id, limit=1, since="2026-01-01T10:00:00Z")

    following = await metrics.list(
        stranger_id, limit=1, since="2026-01-01T11:00:00+01:00", cursor=page.next_cursor
    )

    assert following.items


def tampered(cursor):
    flipped = "A" if cursor[5] != "A" else "B"
    return cursor[:5] + flipped + cursor[6:]


@pytest.mark.parametrize(
    "cursor",
    ["", "garbage", "!!!!", "é", "A" * 65, 42, b"bytes", tampered],
    ids=["empty", "garbage", "not-base64", "non-ascii", "too-long", "int", "bytes", "tampered"],
)
async def test_a_cursor_the_server_did_not_issue_is_refused(metrics, stranger_id, crowded, cursor):
    if callable(cursor):
        cursor = cursor((await metrics.list(stranger_id, limit=1)).next_cursor)

    with pytest.raises(ValidationFailed) as caught:
        await metrics.list(stranger_id, cursor=cursor)

    assert [e.field for e in caught.value.errors] == ["cursor"]
