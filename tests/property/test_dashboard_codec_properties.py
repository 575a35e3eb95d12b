"""A cached dashboard entry reads back as it was written: the same user, query and
rows, decimals to the digit and instants to the microsecond; bytes that are no
entry of ours read back as none."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from engage_adapters.dashboard_codec import JsonDashboardCodec
from engage_core.model import EngagementMetric, MetricType, MetricValue
from engage_core.ports import DashboardEntry
from engage_core.queries import Point, Series

CODEC = JsonDashboardCodec()

moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.astimezone(UTC))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timedelta(minutes=m))
kinds = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,20}", fullmatch=True).map(MetricType)
numbers = st.decimals(
    min_value=-(10**15) + 1, max_value=10**15 - 1, places=6, allow_nan=False, allow_infinity=False
)
values = numbers.map(MetricValue)
queries = st.text(max_size=40)

metrics = st.builds(
    EngagementMetric,
    id=st.integers(min_value=1, max_value=2**63 - 1),
    user_id=st.uuids(),
    metric_type=kinds,
    metric_value=values,
    recorded_at=moments,
)
points = st.builds(
    Point,
    start=st.tuples(moments, offsets).map(lambda m: m[0].astimezone(timezone(m[1]))),
    count=st.integers(min_value=1, max_value=10**6),
    sum=numbers,
    min=numbers,
    max=numbers,
)
series = st.builds(Series, metric_type=kinds, points=st.lists(points, max_size=4).map(tuple))


def _digits(rows: Sequence[object]) -> list[str]:
    """Every decimal in ``rows`` as written (1.50 and 1.5 are equal but not the same)."""
    found: list[str] = []
    for row in rows:
        if isinstance(row, EngagementMetric):
            found.append(str(row.metric_value.value))
        elif isinstance(row, Series):
            found.extend(str(n) for p in row.points for n in (p.sum, p.min, p.max))
    return found


@given(st.uuids(), queries, st.lists(metrics, max_size=5).map(tuple))
def test_a_page_entry_reads_back_as_written(user_id: UUID, query: str, rows: tuple) -> None:
    entry = DashboardEntry(user_id, query, rows)

    read = CODEC.decode_page(CODEC.encode_page(entry))

    assert read == entry
    assert read is not None
    assert _digits(read.data) == _digits(rows)


@given(st.uuids(), queries, st.lists(series, max_size=3).map(tuple))
def test_a_summary_entry_reads_back_as_written(user_id: UUID, query: str, rows: tuple) -> None:
    entry = DashboardEntry(user_id, query, rows)

    read = CODEC.decode_summary(CODEC.encode_summary(entry))

    assert read == entry
    assert read is not None
    assert _digits(read.data) == _digits(rows)


@given(st.binary(max_size=64))
def test_bytes_that_are_no_entry_read_back_as_none(raw: bytes) -> None:
    assert CODEC.decode_page(raw) is None
    assert CODEC.decode_summary(raw) is None


def test_an_entry_whose_rows_break_the_rules_reads_back_as_none() -> None:
    written = CODEC.encode_page(
        DashboardEntry(
            UUID(int=1),
            "q",
            (
                EngagementMetric(
                    id=1,
                    user_id=UUID(int=1),
                    metric_type=MetricType("views"),
                    metric_value=MetricValue(Decimal(1)),
                    recorded_at=datetime(2025, 1, 1, tzinfo=UTC),
                ),
            ),
        )
    )

    assert CODEC.decode_page(written.replace(b'"views"', b'"not a type"')) is None
