"""One rule for a metric value: the API and the backfill (.jsonl and .csv) take the same
values, store them alike, and refuse the same ones (Python's own extras among them)."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from litestar import Litestar

from engage_cli.files import read_rows
from engage_core.model import NUMERIC_STRING_PATTERN

METRICS = "/api/dashboard/metrics"
ADA = "ada@example.com"
# Spellings Python's Decimal() takes and the contract does not.
PYTHON_ONLY = ["1_000", " 1", "1 ", "\t2", "٣", "\uff11\uff12", "NaN", "sNaN", "-Inf", "Infinity"]

pytestmark = pytest.mark.parametrize("storage", ["memory"])


@pytest.fixture
async def ada(api: Any) -> dict[str, str]:
    auth: dict[str, str] = await api.new_user(ADA)
    return auth


async def _through_the_api(
    client: httpx.AsyncClient, auth: dict[str, str], metric_value_json: str
) -> Decimal | None:
    """The stored value, or None when the API refuses it (422 on metric_value)."""
    body = f'{{"metric_type": "views", "metric_value": {metric_value_json}}}'
    response = await client.post(
        METRICS, content=body, headers={**auth, "Content-Type": "application/json"}
    )
    if response.status_code == 422:
        assert [e["field"] for e in response.json()["errors"]] == ["metric_value"]
        return None
    assert response.status_code == 201, response.text
    stored: Decimal = json.loads(response.text, parse_float=Decimal, parse_int=Decimal)[
        "metric_value"
    ]
    return stored


_loads = itertools.count()


async def _through_the_backfill(
    app: Litestar, rows: Callable[[datetime], str], fmt: str
) -> Decimal | None:
    """The value a backfill stores, or None when it refuses the row.

    Two rows with the value: the first is checked the long way, the second
    on the backfill's fast path (its email and metric type already known).
    """
    first = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=next(_loads))
    text = rows(first) + rows(first + timedelta(seconds=1)).split("\n", 1)[1]  # no header
    services = app.state.services
    report = await services.backfill.backfill(read_rows(io.StringIO(text), fmt), user_email=ADA)
    if not report.ok:
        assert report.fault_count == 2, report.faults
        assert all(f.message.startswith("metric_value ") for f in report.faults), report.faults
        return None
    assert report.inserted == 2
    user = await services.admin.find(ADA)
    exported = services.backfill.export(
        user_id=user.id, since=first, until=first + timedelta(minutes=1)
    )
    values = {metric.metric_value async for metric in exported}
    assert len(values) == 1, values
    return values.pop()


def _jsonl(metric_value_json: str) -> Callable[[datetime], str]:
    def lines(recorded_at: datetime) -> str:
        row = (
            f'{{"metric_type": "views", "metric_value": {metric_value_json}, '
            f'"recorded_at": "{recorded_at.isoformat()}"}}\n'
        )
        return "\n" + row  # the first line (a blank) is skipped, as a header would be

    return lines


def _csv(metric_value: str) -> Callable[[datetime], str]:
    def lines(recorded_at: datetime) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")  # so a CR or LF in a value is quoted
        writer.writerow(["metric_type", "metric_value", "recorded_at"])
        writer.writerow(["views", metric_value, recorded_at.isoformat()])
        return out.getvalue()

    return lines


numeric_looking = st.text(alphabet="0123456789+-.eE_ \t٣\uff11", max_size=14)
json_numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"-?(0|[1-9][0-9]{0,18})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
)
strings = st.one_of(
    numeric_looking,
    st.from_regex(NUMERIC_STRING_PATTERN, fullmatch=True),
    st.sampled_from(PYTHON_ONLY),
    st.text(max_size=8).filter(lambda t: "\0" not in t),  # csv refuses NUL (a file fault)
)
rule_settings = settings(
    max_examples=120,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@rule_settings
@given(text=strings)
@example(text="1_000")
@example(text=" 1 ")
@example(text="1e3")
async def test_a_numeric_string_is_taken_by_the_api_exactly_when_by_the_backfill(
    client: httpx.AsyncClient, app: Litestar, ada: dict[str, str], text: str
) -> None:
    api = await _through_the_api(client, ada, json.dumps(text))
    from_jsonl = await _through_the_backfill(app, _jsonl(json.dumps(text)), "jsonl")
    from_csv = await _through_the_backfill(app, _csv(text), "csv")

    assert api == from_jsonl == from_csv


@rule_settings
@given(number=json_numbers)
@example(number="1e15")
@example(number="999999999999999.5")
@example(number="123456789012345678901234567890")
@example(number="-0.0")
async def test_a_json_number_is_taken_by_the_api_exactly_when_by_the_backfill(
    client: httpx.AsyncClient, app: Litestar, ada: dict[str, str], number: str
) -> None:
    api = await _through_the_api(client, ada, number)
    from_jsonl = await _through_the_backfill(app, _jsonl(number), "jsonl")

    assert api == from_jsonl


@pytest.mark.parametrize("text", PYTHON_ONLY)
async def test_spellings_only_python_takes_are_refused_by_the_api_and_the_backfill(
    client: httpx.AsyncClient, app: Litestar, ada: dict[str, str], text: str
) -> None:
    assert await _through_the_api(client, ada, json.dumps(text)) is None
    assert await _through_the_backfill(app, _csv(text), "csv") is None
