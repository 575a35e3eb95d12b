"""Contract of DashboardCodec: an entry reads back as it was written, of its own
kind only, and bytes that hold no entry (a cache may hold anything) read back as none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest

from engage_core.model import EngagementMetric, MetricType, MetricValue
from engage_core.ports import DashboardCodec, DashboardEntry
from engage_core.queries import Point, Series

ADA = UUID(int=1)
BERLIN_WINTER = timezone(timedelta(hours=1))


def _metric(number: int, value: str) -> EngagementMetric:
    return EngagementMetric(
        id=number,
        user_id=ADA,
        metric_type=MetricType("page_view"),
        metric_value=MetricValue(Decimal(value)),
        recorded_at=datetime(2026, 3, 1, 8, number, 0, 123456, tzinfo=UTC),
    )


def _series() -> Series:
    point = Point(
        start=datetime(2026, 3, 1, tzinfo=BERLIN_WINTER),
        count=2,
        sum=Decimal("10.50"),
        min=Decimal("3.25"),
        max=Decimal("7.25"),
    )
    return Series(metric_type=MetricType("minutes"), points=(point,))


PAGE = DashboardEntry(ADA, "list?limit=2", (_metric(2, "1.50"), _metric(1, "-3")))
SUMMARY = DashboardEntry(ADA, "summary?bucket=day&tz=Europe/Berlin", (_series(),))


def test_a_page_reads_back_as_written(dashboard_codec: DashboardCodec) -> None:
    read = dashboard_codec.decode_page(dashboard_codec.encode_page(PAGE))

    assert read == PAGE
    assert read is not None
    # Decimals to the digit: equal is not enough (1.5 == 1.50).
    assert [str(m.metric_value.value) for m in read.data] == [
        str(m.metric_value.value) for m in PAGE.data
    ]


def test_a_summary_reads_back_as_written(dashboard_codec: DashboardCodec) -> None:
    read = dashboard_codec.decode_summary(dashboard_codec.encode_summary(SUMMARY))

    assert read == SUMMARY
    assert read is not None
    [point] = read.data[0].points
    assert (str(point.sum), point.start.utcoffset()) == ("10.50", timedelta(hours=1))


def test_an_empty_read_reads_back_as_written(dashboard_codec: DashboardCodec) -> None:
    empty = DashboardEntry(ADA, "list", ())

    assert dashboard_codec.decode_page(dashboard_codec.encode_page(empty)) == empty
    assert dashboard_codec.decode_summary(dashboard_codec.encode_summary(empty)) == empty


def test_what_is_encoded_is_the_entry_as_it_was_then(dashboard_codec: DashboardCodec) -> None:
    rows = [_metric(1, "1")]
    raw = dashboard_codec.encode_page(DashboardEntry(ADA, "list", rows))
    rows.append(_metric(2, "2"))

    read = dashboard_codec.decode_page(raw)

    assert read is not None
    assert list(read.data) == [_metric(1, "1")]


def test_an_entry_reads_back_only_as_its_own_kind(dashboard_codec: DashboardCodec) -> None:
    assert dashboard_codec.decode_summary(dashboard_codec.encode_page(PAGE)) is None
    assert dashboard_codec.decode_page(dashboard_codec.encode_summary(SUMMARY)) is None


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff", b"not an entry", b"{}", b"[]", b'{"user": 1, "query": "q"}'],
)
def test_bytes_that_hold_no_entry_read_back_as_none(
    dashboard_codec: DashboardCodec, raw: bytes
) -> None:
    assert dashboard_codec.decode_page(raw) is None
    assert dashboard_codec.decode_summary(raw) is None
