"""A backfill over PostgreSQL is one all-or-nothing load, rules and rollups included.

The rows stream into COPY as they are checked: the earlier ones are already
sent when a later one turns out bad, and nothing of them may be kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.bulk import PostgresBulkMetricStore
from engage_core.services.backfill import BackfillService, RawRow
from engage_core.testing import FakeClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ADA, BOB = "ada@example.com", "bob@example.com"


@pytest.fixture
async def service(pg_pool: AsyncConnectionPool) -> BackfillService:
    async with pg_pool.connection() as conn:
        await conn.execute("TRUNCATE users, engagement_metrics, metric_rollups CASCADE")
        for email in (ADA, BOB):
            await conn.execute(
                "INSERT INTO users (id, email, email_key, password_hash) VALUES (%s, %s, %s, 'h')",
                [uuid.uuid4(), email, email],
            )
    return BackfillService(PostgresBulkMetricStore(pg_pool), FakeClock(T0 + timedelta(days=1)))


def rows(count: int, email: str = ADA) -> Iterator[RawRow]:
    """``count`` good rows on lines 2, 3, ... (one a minute)."""
    for i in range(count):
        yield RawRow(i + 2, email, "views", f"{i}.5", (T0 + timedelta(minutes=i)).isoformat())


async def stored(pg_pool: AsyncConnectionPool) -> tuple[int, int]:
    """Metrics stored, and the count the rollups add up to."""
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM engagement_metrics),"
            " (SELECT coalesce(sum(count), 0) FROM metric_rollups)"
        )
        row = await cur.fetchone()
    assert row is not None
    return row[0], row[1]


async def test_a_bad_last_row_stores_nothing_of_the_rows_already_copied(
    service: BackfillService, pg_pool: AsyncConnectionPool
) -> None:
    bad = RawRow(12, ADA, "views", "many", T0.isoformat())

    report = await service.backfill([*rows(10), bad])

    assert not report.ok
    assert [(f.line, f.message) for f in report.faults] == [
        (12, "metric_value must be a number or a numeric string")
    ]
    assert (report.rows, report.inserted) == (11, 0)
    assert await stored(pg_pool) == (0, 0)


async def test_an_unknown_email_in_the_last_row_stores_nothing_of_the_rows_already_copied(
    service: BackfillService, pg_pool: AsyncConnectionPool
) -> None:
    stranger = RawRow(12, "nobody@example.com", "views", "1", T0.isoformat())

    report = await service.backfill([*rows(10), stranger])

    assert [(f.line, f.message) for f in report.faults] == [
        (12, "email nobody@example.com is not a user")
    ]
    assert await stored(pg_pool) == (0, 0)


async def test_equal_rows_of_one_file_all_go_in_and_a_reload_adds_nothing(
    service: BackfillService, pg_pool: AsyncConnectionPool
) -> None:
    same = RawRow(0, BOB, "views", "2", T0.isoformat())
    file = [*rows(4), same, *rows(3), same, same]  # lines 6, 10 and 11
    file = [
        RawRow(line, r.email, r.metric_type, r.metric_value, r.recorded_at)
        for line, r in enumerate(file, 2)
    ]

    first = await service.backfill(file)
    again = await service.backfill(file)

    # rows(3) repeats three of rows(4): rows equal within the file all go in.
    assert (first.ok, first.inserted, first.skipped) == (True, 10, 0)
    assert (again.ok, again.inserted, again.skipped) == (True, 0, 10)
    assert await stored(pg_pool) == (10, 10)


async def test_progress_counts_every_row_read_once(
    service: BackfillService, pg_pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engage_core.services import backfill

    monkeypatch.setattr(backfill, "PROGRESS_EVERY", 4)
    told: list[int] = []

    report = await service.backfill(rows(10), progress=told.append)

    assert told == [4, 4, 2]
    assert (report.rows, report.inserted) == (10, 10)
    assert await stored(pg_pool) == (10, 10)


async def rollups_match_the_rows(pg_pool: AsyncConnectionPool) -> bool:
    """Every rollup slot is exactly what its raw rows add up to, and no slot is missing."""
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM ("
            " (SELECT user_id, metric_type, engage_rollup_slot(recorded_at), count(*),"
            "         sum(metric_value), min(metric_value), max(metric_value)"
            "    FROM engagement_metrics GROUP BY 1, 2, 3"
            "  EXCEPT ALL"
            "  SELECT user_id, metric_type, bucket_start, count, sum, min, max FROM metric_rollups)"
            " UNION ALL"
            " (SELECT user_id, metric_type, bucket_start, count, sum, min, max FROM metric_rollups"
            "  EXCEPT ALL"
            "  SELECT user_id, metric_type, engage_rollup_slot(recorded_at), count(*),"
            "         sum(metric_value), min(metric_value), max(metric_value)"
            "    FROM engagement_metrics GROUP BY 1, 2, 3)) AS differences"
        )
        row = await cur.fetchone()
    assert row is not None
    return row[0] == 0


async def test_a_load_partly_stored_before_keeps_every_guarantee(
    service: BackfillService, pg_pool: AsyncConnectionPool
) -> None:
    def interleaved(start: int, count: int, value: str = "1") -> list[RawRow]:
        """Ada's and Bob's rows in time order, several to a rollup slot (5 minutes apart)."""
        return [
            RawRow(
                0,
                (ADA, BOB)[i % 2],
                ("views", "clicks")[i % 3 % 2],
                value,
                (T0 + timedelta(minutes=5 * (i // 2))).isoformat(),
            )
            for i in range(start, start + count)
        ]

    def numbered(file: list[RawRow]) -> list[RawRow]:
        return [
            RawRow(line, r.email, r.metric_type, r.metric_value, r.recorded_at)
            for line, r in enumerate(file, 2)
        ]

    older = numbered(interleaved(0, 10))
    assert (await service.backfill(older)).inserted == 10
    # Half of it again (stored before this load: skipped), then new rows, some of
    # them equal to each other (all go in).
    file = numbered([*older[5:], *interleaved(10, 13), *interleaved(10, 3)])

    report = await service.backfill(file)

    assert (report.ok, report.inserted, report.skipped) == (True, 16, 5)
    assert await stored(pg_pool) == (26, 26)
    assert await rollups_match_the_rows(pg_pool)
    again = await service.backfill(file)
    assert (again.inserted, again.skipped) == (0, 21)
    assert await stored(pg_pool) == (26, 26)
