"""Idempotency-Key on the metrics endpoints: a repeat gets the first response, stores nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

METRICS = "/api/dashboard/metrics"
BATCH = "/api/dashboard/metrics/batch"
MIB = 1024 * 1024
PROBLEM_JSON = "application/problem+json"
Problem = Callable[..., dict[str, Any]]


@pytest.fixture
async def ada(api: Any) -> dict[str, str]:
    auth: dict[str, str] = await api.new_user("ada@example.com")
    return auth


def keyed(auth: dict[str, str], key: str) -> dict[str, str]:
    return {**auth, "Idempotency-Key": key}


async def test_a_repeated_metric_returns_the_first_response_and_stores_nothing_new(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], clock: Any
) -> None:
    metric = {"metric_type": "views", "metric_value": 1}
    first = await client.post(METRICS, json=metric, headers=keyed(ada, "order-17"))
    clock.advance(60)  # a later default recorded_at would show a second recording

    again = await client.post(METRICS, json=metric, headers=keyed(ada, "order-17"))

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["content-type"] == "application/json"
    assert await api.list_all(ada) == [first.json()]


async def test_a_repeated_batch_returns_the_first_response_and_stores_nothing_new(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str]
) -> None:
    batch = {"items": [{"metric_type": "views", "metric_value": n} for n in range(3)]}
    first = await client.post(BATCH, json=batch, headers=keyed(ada, "import-2026-01"))

    again = await client.post(BATCH, json=batch, headers=keyed(ada, "import-2026-01"))

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() == {"inserted": 3}
    assert len(await api.list_all(ada)) == 3


async def test_the_same_key_with_another_body_is_422(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    first = await client.post(
        METRICS, json={"metric_type": "views", "metric_value": 1}, headers=keyed(ada, "k1")
    )

    other = await client.post(
        METRICS, json={"metric_type": "views", "metric_value": 2}, headers=keyed(ada, "k1")
    )

    expect_problem(other, 422)
    assert await api.list_all(ada) == [first.json()]


async def test_the_same_key_on_the_other_endpoint_is_422(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    metric = {"metric_type": "views", "metric_value": 1}
    await client.post(METRICS, json=metric, headers=keyed(ada, "k1"))

    batch = await client.post(BATCH, json={"items": [metric]}, headers=keyed(ada, "k1"))

    expect_problem(batch, 422)
    assert len(await api.list_all(ada)) == 1


async def test_different_keys_are_different_requests(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str]
) -> None:
    metric = {"metric_type": "views", "metric_value": 1}

    first = await client.post(METRICS, json=metric, headers=keyed(ada, "k1"))
    second = await client.post(METRICS, json=metric, headers=keyed(ada, "k2"))

    assert first.json()["id"] != second.json()["id"]
    assert len(await api.list_all(ada)) == 2


async def test_requests_without_a_key_are_never_deduplicated(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str]
) -> None:
    metric = {"metric_type": "views", "metric_value": 1}

    for _ in range(3):
        assert (await client.post(METRICS, json=metric, headers=ada)).status_code == 201

    assert len(await api.list_all(ada)) == 3


async def test_keys_belong_to_their_user(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str]
) -> None:
    bob = await api.new_user("bob@example.com")
    metric = {"metric_type": "views", "metric_value": 1}

    adas = await client.post(METRICS, json=metric, headers=keyed(ada, "shared-key"))
    bobs = await client.post(METRICS, json=metric, headers=keyed(bob, "shared-key"))

    assert adas.status_code == bobs.status_code == 201
    assert await api.list_all(ada) == [adas.json()]
    assert await api.list_all(bob) == [bobs.json()]


async def test_a_refused_request_does_not_use_up_its_key(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    bad = await client.post(
        METRICS, json={"metric_type": "views", "metric_value": 1e16}, headers=keyed(ada, "k1")
    )
    expect_problem(bad, 422, fields=["metric_value"])

    fixed = await client.post(
        METRICS, json={"metric_type": "views", "metric_value": 1}, headers=keyed(ada, "k1")
    )

    assert fixed.status_code == 201
    assert await api.list_all(ada) == [fixed.json()]


async def test_a_refused_batch_is_refused_again_on_repeat_and_stores_nothing(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    batch = {"items": [{"metric_type": "views", "metric_value": 1}, {"metric_type": "_"}]}

    for _ in range(2):
        response = await client.post(BATCH, json=batch, headers=keyed(ada, "k1"))
        expect_problem(response, 422, fields=["items.1.metric_value"])

    assert await api.list_all(ada) == []


@pytest.mark.parametrize("key", ["", " ", "has space", "x" * 256, "ключ"])
async def test_a_malformed_key_is_refused_and_stores_nothing(
    client: httpx.AsyncClient,
    api: Any,
    ada: dict[str, str],
    expect_problem: Problem,
    key: str,
) -> None:
    response = await client.post(
        METRICS,
        json={"metric_type": "views", "metric_value": 1},
        headers={
            b"Authorization": ada["Authorization"].encode(),
            b"Idempotency-Key": key.encode("utf-8"),
        },
    )

    expect_problem(response, 422)
    assert await api.list_all(ada) == []


async def test_a_keyed_body_over_1_mib_is_413(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    body = b'{"metric_type": "views", "metric_value": 1' + b" " * MIB + b"}"

    response = await client.post(
        METRICS,
        content=body,
        headers={**keyed(ada, "big"), "Content-Type": "application/json"},
    )

    expect_problem(response, 413)
    small = await client.post(
        METRICS, json={"metric_type": "views", "metric_value": 1}, headers=keyed(ada, "big")
    )
    assert small.status_code == 201


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Inf", "sNaN", "-nan", "1_000", " 1 "])
@pytest.mark.parametrize("endpoint", [METRICS, BATCH])
async def test_a_keyed_request_with_a_value_that_is_not_a_number_is_422_as_without_a_key(
    client: httpx.AsyncClient,
    api: Any,
    ada: dict[str, str],
    expect_problem: Problem,
    endpoint: str,
    value: str,
) -> None:
    metric = {"metric_type": "views", "metric_value": value}
    body = metric if endpoint == METRICS else {"items": [metric]}
    field = "metric_value" if endpoint == METRICS else "items.0.metric_value"

    keyed_response = await client.post(endpoint, json=body, headers=keyed(ada, "k1"))
    plain_response = await client.post(endpoint, json=body, headers=ada)

    expect_problem(keyed_response, 422, fields=[field])
    expect_problem(plain_response, 422, fields=[field])
    assert await api.list_all(ada) == []


def _json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
        | st.sampled_from(["NaN", "-Infinity", "sNaN", "1e999999", "1_0", "\ud800", "٣"])
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    )


_metric_values = st.one_of(
    _json_values(),
    st.text(alphabet="0123456789+-.eE_ \tnaNsifIty٣", max_size=12),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["NaN", "-Inf", "sNaN", "Infinity", "1_000", " 1 ", "1e999999"]),
)
_metric_like = st.fixed_dictionaries(
    {"metric_type": st.sampled_from(["views", "_"]), "metric_value": _metric_values}
) | st.fixed_dictionaries(
    {"metric_type": _json_values(), "metric_value": _metric_values},
    optional={"recorded_at": _json_values(), "extra": _json_values()},
)
_hostile_bodies = st.one_of(
    _json_values().map(lambda v: json.dumps(v).encode()),
    _metric_like.map(lambda m: json.dumps(m).encode()),
    st.lists(_metric_like, max_size=3).map(lambda items: json.dumps({"items": items}).encode()),
    # Not JSON, or not UTF-8: lone surrogates written raw, NaN literals, bytes.
    _metric_like.map(lambda m: json.dumps(m, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.sampled_from([b'{"metric_type":"x","metric_value":NaN}', b"[" * 5000, b""]),
    st.binary(max_size=64),
)
# Any header value a client can send: no CR, LF or NUL (a transport refuses those).
_keys = st.from_regex(rb"[\x21-\x7e]{1,8}", fullmatch=True) | st.binary(max_size=300).filter(
    lambda k: not set(k) & set(b"\r\n\0")
)


@settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(endpoint=st.sampled_from([METRICS, BATCH]), body=_hostile_bodies, key=_keys)
@example(endpoint=METRICS, body=b'{"metric_type": "x", "metric_value": "NaN"}', key=b"k1")
@example(
    endpoint=BATCH, body=b'{"items": [{"metric_type": "x", "metric_value": "-Inf"}]}', key=b"k2"
)
async def test_a_keyed_request_with_any_body_is_never_a_500(
    client: httpx.AsyncClient, ada: dict[str, str], endpoint: str, body: bytes, key: bytes
) -> None:
    response = await client.post(
        endpoint,
        content=body,
        headers={
            b"Authorization": ada["Authorization"].encode(),
            b"Content-Type": b"application/json",
            b"Idempotency-Key": key,
        },
    )

    assert response.status_code in {201, 400, 413, 415, 422}, response.text
    if response.status_code != 201:
        assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
