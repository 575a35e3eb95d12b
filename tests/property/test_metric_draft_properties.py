"""``MetricDraft.parse`` turns raw input into a valid draft or names every fault at once."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engage_core.errors import ValidationFailed
from engage_core.model import MetricDraft, MetricType, MetricValue

FIVE_MINUTES = timedelta(minutes=5)
FIELDS = ("metric_type", "metric_value", "recorded_at")

nows = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)
)
good_types = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}", fullmatch=True)
bad_types = st.one_of(
    st.just(""),
    st.just("page_view\n"),
    st.text(alphabet=string.ascii_letters, min_size=101, max_size=120),
    st.text(min_size=1).filter(lambda t: not (t[0].isascii() and t[0].isalnum())),
    st.none(),
    st.integers(),
)
good_values = st.one_of(
    st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1),
    st.decimals(min_value=-(10**15) + 1, max_value=10**15 - 1, places=6),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda f: round(f, 6)),
    st.integers(min_value=-(10**9), max_value=10**9).map(str),
)
bad_values = st.one_of(
    st.booleans(),
    st.none(),
    st.sampled_from([float("nan"), float("inf"), "NaN", "Infinity", Decimal("NaN"), "1,5", "x"]),
    st.integers(min_value=10**15),
    st.lists(st.integers(), max_size=2),
)
# recorded_at as an offset from now: anything up to five minutes ahead is fine.
good_offsets = st.timedeltas(min_value=timedelta(days=-3650), max_value=FIVE_MINUTES)
late_offsets = st.timedeltas(
    min_value=FIVE_MINUTES + timedelta(microseconds=1), max_value=timedelta(days=3650)
)


def recorded_at_from(now: datetime, offset: timedelta, as_text: bool) -> datetime | str:
    moment = (now + offset).astimezone(UTC)
    return moment.isoformat() if as_text else moment


def fields_refused(**raw: Any) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        MetricDraft.parse(**raw)
    return sorted(error.field for error in caught.value.errors)


@given(
    nows,
    st.sets(st.sampled_from(FIELDS), min_size=1),
    good_types,
    bad_types,
    good_values,
    bad_values,
    good_offsets,
    st.one_of(
        late_offsets.map(lambda late: ("late", late)),
        st.sampled_from(["2024-01-01T00:00:00", "yesterday", "1969-12-31T23:59:59Z", 17]).map(
            lambda garbage: ("garbage", garbage)
        ),
    ),
    st.booleans(),
)
def test_draft_reports_every_faulty_field_at_once(
    now: datetime,
    faulty: set[str],
    good_type: str,
    bad_type: object,
    good_value: object,
    bad_value: object,
    good_offset: timedelta,
    bad_recorded_at: tuple[str, Any],
    as_text: bool,
) -> None:
    kind, bad = bad_recorded_at
    if kind == "late":
        bad = recorded_at_from(now, bad, as_text)
    raw = {
        "metric_type": bad_type if "metric_type" in faulty else good_type,
        "metric_value": bad_value if "metric_value" in faulty else good_value,
        "recorded_at": bad
        if "recorded_at" in faulty
        else recorded_at_from(now, good_offset, as_text),
    }
    assert fields_refused(now=now, **raw) == sorted(faulty)


@given(nows, good_types, good_values, late_offsets, st.booleans())
@example(datetime(2024, 1, 1, tzinfo=UTC), "x", 1, FIVE_MINUTES + timedelta(microseconds=1), False)
def test_draft_refuses_recorded_at_more_than_five_minutes_after_now(
    now: datetime, metric_type: str, value: object, late: timedelta, as_text: bool
) -> None:
    recorded_at = recorded_at_from(now, late, as_text)
    refused = fields_refused(
        metric_type=metric_type, metric_value=value, recorded_at=recorded_at, now=now
    )
    assert refused == ["recorded_at"]


@given(nows, good_types, good_values, good_offsets, st.booleans())
@example(datetime(2024, 1, 1, tzinfo=UTC), "x", 1, FIVE_MINUTES, False)
@example(datetime(2024, 1, 1, tzinfo=UTC), "x", 1, FIVE_MINUTES, True)
def test_draft_accepts_recorded_at_up_to_five_minutes_after_now(
    now: datetime, metric_type: str, value: object, offset: timedelta, as_text: bool
) -> None:
    recorded_at = recorded_at_from(now, offset, as_text)
    draft = MetricDraft.parse(
        metric_type=metric_type, metric_value=value, recorded_at=recorded_at, now=now
    )
    assert draft.recorded_at.value == now + offset
    assert draft.metric_type == MetricType(metric_type)
    assert draft.metric_value == MetricValue(value)


@given(nows, good_types, good_values)
def test_draft_without_recorded_at_is_recorded_now(
    now: datetime, metric_type: str, value: object
) -> None:
    draft = MetricDraft.parse(
        metric_type=metric_type, metric_value=value, recorded_at=None, now=now
    )
    assert draft.recorded_at.value == now
