"""No request, however malformed, gets a 500: each gets an RFC 9457 problem instead."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from support.asgi import post_through_asgi

PASSWORD = "correct horse battery staple"
METRICS = "/api/dashboard/metrics"
MIB = 1024 * 1024
Problem = Callable[..., dict[str, Any]]
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def auth(api: Any) -> dict[str, str]:
    headers: dict[str, str] = await api.new_user("ada@example.com")
    return headers


@pytest.fixture
async def stored_nothing(client: httpx.AsyncClient, auth: dict[str, str]) -> AsyncIterator[None]:
    """After the test, Ada still has no metrics: a refused request stores nothing."""
    yield
    assert (await client.get(METRICS, headers=auth)).json()["items"] == []


# --- malformed JSON ----------------------------------------------------------------------

MALFORMED = {
    "truncated": b'{"metric_type": "views", "metric_value": ',
    "not-json": b"metric_type=views",
    "trailing-data": b'{"metric_type": "views", "metric_value": 1}{}',
    "single-quotes": b"{'metric_type': 'views', 'metric_value': 1}",
    "nan-literal": b'{"metric_type": "views", "metric_value": NaN}',
    "infinity-literal": b'{"metric_type": "views", "metric_value": -Infinity}',
    "invalid-utf8": b'{"metric_type": "\xff\xfe", "metric_value": 1}',
    "lone-surrogate": b'{"metric_type": "\\ud800", "metric_value": 1}',
    "deeply-nested": b"[" * 100_000,
    "deeply-nested-field": b'{"metric_type": "v", "metric_value": 1, "x": '
    + b"[" * 50_000
    + b"]" * 50_000
    + b"}",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_json_is_400(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    stored_nothing: None,
    expect_problem: Problem,
    body: bytes,
) -> None:
    response = await client.post(METRICS, content=body, headers={**auth, **JSON})

    expect_problem(response, 400)


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("path", ["/api/auth/signup", "/api/auth/login", "/api/auth/token"])
async def test_malformed_json_to_the_auth_endpoints_is_400(
    client: httpx.AsyncClient, expect_problem: Problem, path: str, body: bytes
) -> None:
    response = await client.post(path, content=body, headers=JSON)

    expect_problem(response, 400)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"", ["body"]),
        (b"[]", ["body"]),
        (b"null", ["body"]),
        (b'"views"', ["body"]),
        (b"42", ["body"]),
        (b'{"email": 42, "password": "' + PASSWORD.encode() + b'"}', ["email"]),
        (b'{"email": "ada@example.com", "password": null}', ["password"]),
        (b'{"email": "ada@example.com", "password": ["a", "b"]}', ["password"]),
        (b'{"email": "ada@example.com", "password": true}', ["password"]),
        (b'{"email": "ada@example.com"}', ["password"]),
        (
            b'{"email": "ada@example.com", "password": "'
            + PASSWORD.encode()
            + b'", "admin": true}',
            ["admin"],
        ),
        (
            b'{"email": "'
            + b"a" * 2000
            + b'@example.com", "password": "'
            + PASSWORD.encode()
            + b'"}',
            ["email"],
        ),
        (b'{"email": "ada@example.com", "password": "' + b"p" * 5000 + b'"}', ["password"]),
    ],
    ids=[
        "empty",
        "array",
        "null",
        "string",
        "number",
        "email-number",
        "password-null",
        "password-list",
        "password-bool",
        "password-missing",
        "unknown-field",
        "email-2000-chars",
        "password-5000-chars",
    ],
)
async def test_a_signup_body_of_the_wrong_shape_is_422_naming_the_field(
    client: httpx.AsyncClient, expect_problem: Problem, body: bytes, fields: list[str]
) -> None:
    response = await client.post("/api/auth/signup", content=body, headers=JSON)

    expect_problem(response, 422, fields=fields)


# --- metric values and timestamps ----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b"1e400",
        b"-1e400",
        b"1" + b"0" * 400,
        b"-" + b"9" * 5000,  # more digits than Python's int() reads
        b"1e15",
        b"1000000000000000.0",
        b'"NaN"',
        b'"-Infinity"',
        b'"inf"',
        b'"1e99999"',
        b'"0x10"',
        b'"1,5"',
        b'""',
        b"true",
        b"false",
        b"null",
        b"{}",
    ],
)
async def test_non_finite_huge_and_non_numeric_values_are_422(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    stored_nothing: None,
    expect_problem: Problem,
    value: bytes,
) -> None:
    body = b'{"metric_type": "views", "metric_value": ' + value + b"}"

    response = await client.post(METRICS, content=body, headers={**auth, **JSON})

    expect_problem(response, 422, fields=["metric_value"])


async def test_a_whole_number_longer_than_python_reads_is_its_fields_422_in_a_batch_too(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    stored_nothing: None,
    expect_problem: Problem,
) -> None:
    huge = b"9" * 4301
    body = b'{"items": [{"metric_type": "views", "metric_value": 1}, {"metric_type": "views",'
    body += b' "metric_value": ' + huge + b"}]}"

    response = await client.post(METRICS + "/batch", content=body, headers={**auth, **JSON})

    expect_problem(response, 422, fields=["items.1.metric_value"])


async def test_a_constant_beside_a_whole_number_longer_than_python_reads_is_still_400(
    client: httpx.AsyncClient, auth: dict[str, str], expect_problem: Problem
) -> None:
    body = b'{"metric_type": "views", "metric_value": ' + b"9" * 4301 + b', "x": NaN}'

    response = await client.post(METRICS, content=body, headers={**auth, **JSON})

    expect_problem(response, 400)


async def test_a_json_number_keeps_digits_a_float_would_lose(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    decimal_json: Callable[[httpx.Response], Any],
) -> None:
    for digits in ("999999999999999.99999", "0.30000000000000000001", "123456789012.123456789"):
        body = b'{"metric_type": "views", "metric_value": ' + digits.encode() + b"}"

        response = await client.post(METRICS, content=body, headers={**auth, **JSON})

        assert response.status_code == 201, response.text
        assert str(decimal_json(response)["metric_value"]) == digits


@pytest.mark.parametrize(
    "recorded_at",
    [
        "2026-01-01T00:00:00",  # naive
        "2026-01-01",  # a date, no time or offset
        "9999-12-31T23:59:59+00:00",  # far future
        "9999-12-31T23:59:59-23:59",  # beyond datetime's range once in UTC
        "0001-01-01T00:00:00+23:59",  # before it
        "1969-12-31T23:59:59Z",  # before the epoch
        "2026-02-30T00:00:00Z",  # no such day
        "2026-01-01T25:00:00Z",
        "2026-01-01X00:00:00Z",  # fromisoformat takes any separator; ISO 8601 does not
        "2026-01-01T00:00:00xZ",  # a stray character before the offset
        "2026-01-01T00:00:00+00:00.5",  # an offset with a fraction
        "yesterday",
        "",
        "2026-01-01T00:00:00Z" + " " * 100,  # over the length limit
    ],
)
async def test_bad_timestamps_are_422(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    stored_nothing: None,
    expect_problem: Problem,
    recorded_at: str,
) -> None:
    response = await client.post(
        METRICS,
        json={"metric_type": "views", "metric_value": 1, "recorded_at": recorded_at},
        headers=auth,
    )

    expect_problem(response, 422, fields=["recorded_at"])


# --- query parameters ------------------------------------------------------------------------


@pytest.fixture
async def cursor(client: httpx.AsyncClient, api: Any, auth: dict[str, str]) -> str:
    """A genuine cursor for Ada's listing, one metric a page."""
    await api.record_batch(auth, [{"metric_type": "views", "metric_value": n} for n in range(3)])
    page = (await client.get(METRICS, params={"limit": 1}, headers=auth)).json()
    token: str = page["next_cursor"]
    return token


def _flip(cursor: str, at: int) -> str:
    swapped = "B" if cursor[at] != "B" else "C"
    return cursor[:at] + swapped + cursor[at + 1 :]


@pytest.mark.parametrize(
    "forge",
    [
        lambda c: "abc",
        lambda c: "",
        lambda c: "A" * 44,
        lambda c: _flip(c, 5),  # the position
        lambda c: _flip(c, 30),  # the signature
        lambda c: c[:-1],
        lambda c: c + "A",
        lambda c: c + "=",
        lambda c: "x" * 300,
        lambda c: "é" * 44,
        lambda c: "+" + c[1:],
    ],
    ids=[
        "short",
        "empty",
        "zeros",
        "edited-position",
        "edited-signature",
        "truncated",
        "extended",
        "padded",
        "huge",
        "non-ascii",
        "other-alphabet",
    ],
)
async def test_a_cursor_the_server_did_not_issue_is_400(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    cursor: str,
    expect_problem: Problem,
    forge: Callable[[str], str],
) -> None:
    forged = forge(cursor)
    assert forged != cursor

    response = await client.get(METRICS, params={"limit": 1, "cursor": forged}, headers=auth)

    expect_problem(response, 400, fields=["cursor"])


async def test_a_cursor_only_works_with_the_filters_it_was_issued_for(
    client: httpx.AsyncClient, auth: dict[str, str], cursor: str, expect_problem: Problem
) -> None:
    response = await client.get(
        METRICS, params={"limit": 1, "cursor": cursor, "metric_type": "views"}, headers=auth
    )

    expect_problem(response, 400, fields=["cursor"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"until": "soon"}, "until"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"metric_type": "no spaces"}, "metric_type"),
        ({"metric_type": "x" * 101}, "metric_type"),
        ({"limit": "1e3"}, "limit"),
    ],
)
async def test_bad_listing_queries_are_400(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    expect_problem: Problem,
    params: dict[str, str],
    field: str,
) -> None:
    response = await client.get(METRICS, params=params, headers=auth)

    expect_problem(response, 400, fields=[field])


# --- sizes and content types -------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid metric, padded with JSON whitespace to exactly ``size`` bytes."""
    body = b'{"metric_type": "views", "metric_value": 1}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_a_body_of_exactly_1_mib_is_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(METRICS, content=padded(MIB), headers={**auth, **JSON})

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", [METRICS, f"{METRICS}/batch", "/api/auth/signup"])
async def test_a_body_over_1_mib_is_413(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    stored_nothing: None,
    expect_problem: Problem,
    path: str,
) -> None:
    response = await client.post(path, content=padded(MIB + 1), headers={**auth, **JSON})

    expect_problem(response, 413)


async def post_in_chunks(
    client: AsyncTestClient[Litestar], path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` in 64 KiB chunks with no Content-Length (chunked transfer), straight
    through ASGI on the app's own event loop; answer status, headers and body."""
    chunks = [body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)]
    incoming = (
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    )
    framing = [(b"transfer-encoding", b"chunked")]
    sent = post_through_asgi(
        client,
        path,
        incoming,
        [*framing, *((k.lower().encode(), v.encode()) for k, v in headers.items())],
    )
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, content


async def test_a_body_over_1_mib_sent_in_chunks_is_413(
    client: AsyncTestClient[Litestar], auth: dict[str, str], stored_nothing: None
) -> None:
    status, headers, content = await post_in_chunks(
        client, METRICS, padded(2 * MIB), {**auth, **JSON}
    )

    assert status == 413
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(content)["status"] == 413


async def test_a_body_under_1_mib_sent_in_chunks_is_accepted(
    client: AsyncTestClient[Litestar], auth: dict[str, str]
) -> None:
    status, _, content = await post_in_chunks(client, METRICS, padded(MIB // 2), {**auth, **JSON})

    assert status == 201, content


async def test_a_body_over_1_mib_that_claims_to_be_short_is_413(
    client: httpx.AsyncClient, auth: dict[str, str], stored_nothing: None, expect_problem: Problem
) -> None:
    response = await client.post(
        METRICS,
        content=padded(2 * MIB),
        headers={**auth, **JSON, "Content-Length": "10"},
    )

    expect_problem(response, 413)


@pytest.mark.parametrize(
    "path", ["/api/auth/mfa/totp", "/api/auth/verify/request", "/api/auth/logout"]
)
async def test_a_body_over_1_mib_to_an_operation_that_takes_none_is_413(
    client: httpx.AsyncClient, auth: dict[str, str], expect_problem: Problem, path: str
) -> None:
    response = await client.post(path, content=padded(MIB + 1), headers={**auth, **JSON})

    expect_problem(response, 413)
    assert response.headers["connection"] == "close"
    assert (await client.get("/api/auth/me", headers=auth)).status_code == 200  # not logged out


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "GZIP", "gzip, identity"])
@pytest.mark.parametrize("path", [METRICS, "/api/auth/signup", "/api/auth/logout"])
async def test_a_content_coded_body_is_415_saying_identity(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    stored_nothing: None,
    expect_problem: Problem,
    path: str,
    coding: str,
) -> None:
    # Not compressed at all, though labelled so: a body must not be taken for what it is not.
    body = b'{"metric_type": "views", "metric_value": 1}'
    headers = {**auth, **JSON, "Content-Encoding": coding}

    response = await client.post(path, content=body, headers=headers)

    expect_problem(response, 415)
    assert response.headers["accept-encoding"] == "identity"
    assert (await client.get("/api/auth/me", headers=auth)).status_code == 200  # not logged out


async def test_a_body_labelled_identity_is_taken(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = b'{"metric_type": "views", "metric_value": 1}'
    headers = {**auth, **JSON, "Content-Encoding": "Identity"}

    response = await client.post(METRICS, content=body, headers=headers)

    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "application/jsonx",
        None,
    ],
)
@pytest.mark.parametrize("path", [METRICS, "/api/auth/signup", "/api/auth/login"])
async def test_a_body_that_is_not_json_is_415(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    stored_nothing: None,
    expect_problem: Problem,
    path: str,
    content_type: str | None,
) -> None:
    body = b'{"email": "bob@example.com", "password": "' + PASSWORD.encode() + b'"}'
    headers = {**auth, **({"Content-Type": content_type} if content_type else {})}

    response = await client.post(path, content=body, headers=headers)

    expect_problem(response, 415)
    assert (
        await client.post(
            "/api/auth/token", json={"email": "bob@example.com", "password": PASSWORD}
        )
    ).status_code == 401


async def test_json_with_a_charset_parameter_is_json(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        METRICS,
        content=b'{"metric_type": "views", "metric_value": 1}',
        headers={**auth, "Content-Type": "application/json; charset=utf-8"},
    )

    assert response.status_code == 201


# --- routes and methods ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/api",
        "/api/auth",
        "/api/dashboard/metrics/1",
        "/api/auth/%00",
        "/..%2f..%2fetc/passwd",
    ],
)
async def test_an_unknown_route_is_404(
    client: httpx.AsyncClient, expect_problem: Problem, path: str
) -> None:
    expect_problem(await client.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/auth/signup"),
        ("GET", "/api/auth/login"),
        ("PUT", "/api/auth/me"),
        ("PATCH", "/api/dashboard/metrics"),
        ("DELETE", "/api/dashboard/metrics"),
        ("GET", "/api/dashboard/metrics/batch"),
        ("POST", "/api/dashboard/summary"),
        ("POST", "/healthz"),
    ],
)
async def test_a_method_a_route_does_not_have_is_405(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    expect_problem: Problem,
    method: str,
    path: str,
) -> None:
    response = await client.request(method, path, headers=auth)

    expect_problem(response, 405)
