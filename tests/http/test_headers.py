"""CONTRACT §4 "Headers": nosniff everywhere, no-store where a cache must not keep the
answer, HSTS while cookies are Secure, and a refused CORS preflight as a problem."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

TRUSTED_ORIGIN = "https://app.example.com"  # ENGAGE_CORS_ORIGINS in tests/http/conftest.py
FOREIGN_ORIGIN = "https://evil.example.net"
MIB = 1024 * 1024
PASSWORD = "correct horse battery staple"  # what api.sign_up gives every account
Problem = Callable[..., dict[str, Any]]


@pytest.fixture
def environ(environ: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """The suite's settings, with a test's overrides (``indirect`` parametrization)."""
    overrides: dict[str, str] = getattr(request, "param", {})
    return {**environ, **overrides}


secure_cookies = pytest.mark.parametrize(
    "environ", [{"ENGAGE_COOKIE_SECURE": "true"}], indirect=True, ids=["secure"]
)
no_cors_origins = pytest.mark.parametrize(
    "environ", [{"ENGAGE_CORS_ORIGINS": ""}], indirect=True, ids=["same-origin-only"]
)


@pytest.fixture
async def ada(api: Any) -> dict[str, str]:
    auth: dict[str, str] = await api.new_user("ada@example.com")
    return auth


def preflight(origin: str, method: str = "POST", headers: str = "content-type") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


# --- X-Content-Type-Options -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/schema", 200),
        ("GET", "/schema/openapi.json", 200),
        ("GET", "/no/such/page", 404),
        ("DELETE", "/healthz", 405),
        ("GET", "/api/auth/me", 401),
        ("POST", "/api/auth/signup", 422),
    ],
)
async def test_every_response_says_nosniff(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path, json={} if method == "POST" else None)

    assert response.status_code == status, response.text
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_413_says_nosniff_and_that_the_connection_closes(
    client: httpx.AsyncClient, ada: dict[str, str], expect_problem: Problem
) -> None:
    response = await client.post(
        "/api/dashboard/metrics",
        content=b" " * (MIB + 1),
        headers={**ada, "Content-Type": "application/json"},
    )

    expect_problem(response, 413)
    assert response.headers["x-content-type-options"] == "nosniff"
    # The rest of the body is never read: the client must not reuse the connection.
    assert response.headers["connection"] == "close"


# --- Cache-Control ----------------------------------------------------------------------


async def test_an_answer_to_a_bearer_request_is_not_stored(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    for path in ("/api/auth/me", "/api/dashboard/metrics", "/api/dashboard/summary"):
        response = await client.get(path, headers=ada)

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store", path


async def test_an_answer_to_a_cookie_session_is_not_stored(
    client: httpx.AsyncClient, api: Any
) -> None:
    await api.sign_up("ada@example.com")
    login = await api.log_in("ada@example.com")
    assert login.headers["cache-control"] == "no-store"  # it sets the session cookies

    me = await client.get("/api/auth/me")

    assert me.status_code == 200
    assert "set-cookie" not in me.headers
    assert me.headers["cache-control"] == "no-store"


async def test_a_refused_credential_is_not_stored_either(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/me", headers={"Authorization": "Bearer nonsense"})

    assert response.status_code == 401
    assert response.headers["cache-control"] == "no-store"


async def test_a_bearer_token_in_the_answer_is_not_stored(
    api: Any, new_browser: Callable[[], httpx.AsyncClient]
) -> None:
    await api.sign_up("ada@example.com")
    fresh = new_browser()  # no cookie and no Authorization: only the body is a credential

    response = await fresh.post(
        "/api/auth/token", json={"email": "ada@example.com", "password": PASSWORD}
    )

    assert response.status_code == 200, response.text
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"  # RFC 6749 §5.1


async def test_a_response_that_sets_a_cookie_is_not_stored(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")  # a first GET sets the csrftoken cookie

    assert "csrftoken" in response.headers["set-cookie"]
    assert response.headers["cache-control"] == "no-store"


async def test_an_anonymous_answer_that_sets_no_cookie_may_be_cached(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/healthz")  # now the browser holds its csrftoken

    response = await client.get("/healthz")

    assert "set-cookie" not in response.headers
    assert "cache-control" not in response.headers


# --- Strict-Transport-Security ----------------------------------------------------------


@secure_cookies
async def test_hsts_is_sent_while_cookies_are_secure(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/no/such/page"):
        response = await client.get(path)

        assert response.headers["strict-transport-security"] == (
            "max-age=63072000; includeSubDomains"
        )


async def test_no_hsts_while_cookies_are_not_secure(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert "strict-transport-security" not in response.headers


# --- CORS preflight ---------------------------------------------------------------------


async def test_a_preflight_from_a_listed_origin_is_allowed(client: httpx.AsyncClient) -> None:
    response = await client.options("/api/dashboard/metrics", headers=preflight(TRUSTED_ORIGIN))

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == TRUSTED_ORIGIN
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("request_headers", "fragment"),
    [
        (preflight(FOREIGN_ORIGIN), FOREIGN_ORIGIN),
        (preflight(TRUSTED_ORIGIN, method="PUT"), "PUT"),
        (preflight(TRUSTED_ORIGIN, headers="x-smuggled"), "header"),
    ],
    ids=["origin", "method", "header"],
)
async def test_a_refused_preflight_is_a_problem(
    client: httpx.AsyncClient,
    expect_problem: Problem,
    request_headers: dict[str, str],
    fragment: str,
) -> None:
    response = await client.options("/api/dashboard/metrics", headers=request_headers)

    body = expect_problem(response, 403)
    assert fragment in body["detail"]
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert int(response.headers["content-length"]) == len(response.content)


@no_cors_origins
async def test_without_listed_origins_a_cross_origin_preflight_is_a_problem(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    response = await client.options("/api/auth/login", headers=preflight(TRUSTED_ORIGIN))

    expect_problem(response, 403)
    assert "access-control-allow-origin" not in response.headers
