"""The BulkMetricStore contract, over the fake and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

from engage_core.model import MetricDraft, MetricType, MetricValue, Timestamp
from engage_core.ports import StagedMetric
from engage_core.queries import MetricPageQuery

if TYPE_CHECKING:
    from conftest import BulkStorage, Subject

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def email_of(user_id: UUID) -> str:
    return f"{user_id.hex}@example.com"  # as the contract's new_user makes them


def staged(owner: UUID, minute: int, value: str = "1.5", *, line: int = 0) -> StagedMetric:
    return StagedMetric(
        line or minute + 2, email_of(owner), "views", Decimal(value), T0 + timedelta(minutes=minute)
    )


def numbered(rows: Iterable[StagedMetric]) -> list[StagedMetric]:
    """The rows with the lines of a file: 2, 3, 4, ... (line 1 is the header)."""
    return [row._replace(line=line) for line, row in enumerate(rows, start=2)]


async def stored(storage: BulkStorage, owner: UUID) -> list[tuple[datetime, Decimal]]:
    page = await storage.metrics.page(owner, MetricPageQuery(limit=100))
    return sorted((m.recorded_at, m.metric_value.value) for m in page)


async def test_a_load_stores_every_row_and_loading_it_again_adds_nothing(
    bulk_metric_store: Subject[BulkStorage],
) -> None:
    storage, ada = bulk_metric_store.impl, await bulk_metric_store.new_user()
    rows = numbered(staged(ada, minute) for minute in range(5))

    first = await storage.store.load(rows, commit=lambda: True)
    again = await storage.store.load(rows, commit=lambda: True)

    assert (first.committed, first.inserted, first.skipped) == (True, 5, 0)
    assert (again.committed, again.inserted, again.skipped) == (True, 0, 5)
    assert len(await stored(storage, ada)) == 5


async def test_equal_rows_of_one_load_all_go_in_and_are_all_skipped_next_time(
    bulk_metric_store: Subject[BulkStorage],
) -> None:
    storage, ada = bulk_metric_store.impl, await bulk_metric_store.new_user()
    # Rows 1, 3 and 5 are equal, far apart.
    rows = numbered(
        [staged(ada, 0), staged(ada, 1), staged(ada, 0), staged(ada, 2), staged(ada, 0)]
    )

    first = await storage.store.load(rows, commit=lambda: True)
    again = await storage.store.load(rows, commit=lambda: True)

    assert (first.inserted, first.skipped) == (5, 0)
    assert (again.inserted, again.skipped) == (0, 5)
    assert [moment for moment, _ in await stored(storage, ada)] == [
        T0,
        T0,
        T0,
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2),
    ]


async def test_a_row_equal_to_a_stored_metric_is_skipped_and_one_differing_in_anything_is_not(
    bulk_metric_store: Subject[BulkStorage],
) -> None:
    storage = bulk_metric_store.impl
    ada, bob = await bulk_metric_store.new_user(), await bulk_metric_store.new_user()
    draft = MetricDraft(
        metric_type=MetricType("views"), metric_value=MetricValue("1.50"), recorded_at=Timestamp(T0)
    )
    await storage.metrics.add(ada, draft)
    rows = numbered(
        [
            staged(ada, 0, "1.5"),  # equal (1.5 is 1.50)
            staged(ada, 0, "2"),  # another value
            staged(ada, 1, "1.5"),  # another time
            staged(ada, 0, "1.5")._replace(metric_type="clicks"),  # another type
            staged(bob, 0, "1.5"),  # another user
        ]
    )

    outcome = await storage.store.load(rows, commit=lambda: True)

    assert (outcome.inserted, outcome.skipped) == (4, 1)
    assert len(await stored(storage, ada)) == 4
    assert len(await stored(storage, bob)) == 1


async def test_an_unknown_email_anywhere_stores_nothing_and_is_reported_by_line(
    bulk_metric_store: Subject[BulkStorage],
) -> None:
    storage, ada = bulk_metric_store.impl, await bulk_metric_store.new_user()
    stranger = StagedMetric(0, "nobody@example.com", "views", Decimal(1), T0)
    rows = numbered([*(staged(ada, minute) for minute in range(5)), stranger, stranger])

    outcome = await storage.store.load(rows, commit=lambda: True)

    assert not outcome.committed
    assert [(f.line, f.message) for f in outcome.unknown_emails] == [
        (7, "email nobody@example.com is not a user"),
        (8, "email nobody@example.com is not a user"),
    ]
    assert outcome.unknown_email_rows == 2
    assert await stored(storage, ada) == []


async def test_commit_saying_no_after_the_last_row_stores_nothing(
    bulk_metric_store: Subject[BulkStorage],
) -> None:
    storage, ada = bulk_metric_store.impl, await bulk_metric_store.new_user()
    taken: list[StagedMetric] = []

    def rows() -> Iterator[StagedMetric]:
        for row in numbered(staged(ada, minute) for minute in range(5)):
            taken.append(row)
            yield row

    # As a backfill whose last row is bad: "yes" until every row has been taken.
    outcome = await storage.store.load(rows(), commit=lambda: len(taken) < 5)

    assert not outcome.committed
    assert len(taken) == 5
    assert await stored(storage, ada) == []


async def test_export_streams_every_matching_metric_with_its_users_email(
    bulk_metric_store: Subject[BulkStorage],
) -> None:
    storage, ada = bulk_metric_store.impl, await bulk_metric_store.new_user()
    bob = await bulk_metric_store.new_user()
    rows = numbered([staged(ada, 0), staged(ada, 10), staged(bob, 5)])
    await storage.store.load(rows, commit=lambda: True)

    everything = [m async for m in storage.store.export(user_id=None, since=None, until=None)]
    adas = [
        (m.email, m.recorded_at)
        async for m in storage.store.export(
            user_id=ada, since=T0 + timedelta(minutes=1), until=None
        )
    ]

    assert sorted((m.email, m.recorded_at, m.metric_value) for m in everything) == sorted(
        (row.email, row.recorded_at, row.metric_value) for row in rows
    )
    assert adas == [(email_of(ada), T0 + timedelta(minutes=10))]
