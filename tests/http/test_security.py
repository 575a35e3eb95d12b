"""Forged tokens, cross-site requests, foreign origins and cookie flags."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from engage_adapters.settings import Settings
from engage_core.testing import FakeClock

PASSWORD = "correct horse battery staple"
TRUSTED_ORIGIN = "https://app.example.com"
Problem = Callable[..., dict[str, Any]]
Browser = Callable[[], httpx.AsyncClient]
Claims = dict[str, Any]


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def set_cookies(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """Each cookie a response sets: name → its attributes."""
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        for name, morsel in SimpleCookie(header).items():
            cookies[name] = {k.lower(): v for k, v in morsel.items() if v}
    return cookies


@pytest.fixture
def secret(settings: Settings) -> str:
    """The app's own JWT secret: forging with it proves the checks, not luck."""
    assert settings.jwt_secret
    return settings.jwt_secret


@pytest.fixture
async def genuine(api: Any, claims_of: Callable[[str], Claims]) -> tuple[dict[str, str], Claims]:
    """A live bearer token for Ada and its claims."""
    await api.sign_up("ada@example.com")
    auth = await api.bearer("ada@example.com")
    return auth, claims_of(auth["Authorization"].removeprefix("Bearer "))


# --- JWTs ------------------------------------------------------------------------------


async def test_a_token_signed_with_the_app_secret_and_live_session_is_accepted(
    client: httpx.AsyncClient, genuine: tuple[dict[str, str], Claims], secret: str
) -> None:
    """The control for the forgeries below: the same claims, re-signed, do work."""
    _, claims = genuine
    token = jwt.encode(claims, secret, algorithm="HS256")

    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200


def _alg_none(claims: Claims, secret: str) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _alg_none_upper(claims: Claims, secret: str) -> str:
    return f"{b64({'alg': 'None', 'typ': 'JWT'})}.{b64(claims)}."


def _signature_stripped(claims: Claims, secret: str) -> str:
    return jwt.encode(claims, secret, algorithm="HS256").rsplit(".", 1)[0] + "."


def _hs512(claims: Claims, secret: str) -> str:
    with warnings.catch_warnings():  # the app's secret is short for HS512: that is the point
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm="HS512")


def _hs384(claims: Claims, secret: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm="HS384")


def _wrong_secret(claims: Claims, secret: str) -> str:
    return jwt.encode(claims, "another secret that is 32+ bytes long", algorithm="HS256")


def _tampered_payload(claims: Claims, secret: str) -> str:
    header, _, signature = jwt.encode(claims, secret, algorithm="HS256").split(".")
    return f"{header}.{b64({**claims, 'exp': claims['exp'] + 3600})}.{signature}"


def _expired(claims: Claims, secret: str) -> str:
    return jwt.encode(
        {**claims, "iat": claims["iat"] - 7200, "exp": claims["iat"] - 3600}, secret, "HS256"
    )


def _issued_in_the_future(claims: Claims, secret: str) -> str:
    return jwt.encode(
        {**claims, "iat": claims["iat"] + 7200, "exp": claims["exp"] + 7200}, secret, "HS256"
    )


def _wrong_issuer(claims: Claims, secret: str) -> str:
    return jwt.encode({**claims, "iss": "someone-else"}, secret, algorithm="HS256")


def _wrong_audience(claims: Claims, secret: str) -> str:
    return jwt.encode({**claims, "aud": "another-service"}, secret, algorithm="HS256")


def _unknown_session(claims: Claims, secret: str) -> str:
    return jwt.encode({**claims, "sid": str(uuid4())}, secret, algorithm="HS256")


def _unknown_user(claims: Claims, secret: str) -> str:
    return jwt.encode({**claims, "sub": str(uuid4())}, secret, algorithm="HS256")


def _not_a_uuid(claims: Claims, secret: str) -> str:
    return jwt.encode({**claims, "sub": "admin"}, secret, algorithm="HS256")


FORGERIES = {
    f.__name__.lstrip("_"): f
    for f in (
        _alg_none,
        _alg_none_upper,
        _signature_stripped,
        _hs512,
        _hs384,
        _wrong_secret,
        _tampered_payload,
        _expired,
        _issued_in_the_future,
        _wrong_issuer,
        _wrong_audience,
        _unknown_session,
        _unknown_user,
        _not_a_uuid,
    )
}
CLAIMS = ["sub", "sid", "iat", "exp", "iss", "aud"]


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
@pytest.mark.parametrize("carrier", ["bearer", "cookie"])
async def test_forged_tokens_are_401(
    client: httpx.AsyncClient,
    genuine: tuple[dict[str, str], Claims],
    secret: str,
    expect_problem: Problem,
    forge: Callable[[Claims, str], str],
    carrier: str,
) -> None:
    _, claims = genuine
    token = forge(claims, secret)

    if carrier == "bearer":
        response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    else:
        client.cookies.set("engage_access", token, domain="testserver.local", path="/")
        response = await client.get("/api/auth/me")

    expect_problem(response, 401)


@pytest.mark.parametrize("claim", CLAIMS)
async def test_a_token_missing_a_required_claim_is_401(
    client: httpx.AsyncClient,
    genuine: tuple[dict[str, str], Claims],
    secret: str,
    expect_problem: Problem,
    claim: str,
) -> None:
    _, claims = genuine
    token = jwt.encode({k: v for k, v in claims.items() if k != claim}, secret, "HS256")

    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})

    expect_problem(response, 401)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer not.a.jwt",
        "Basic YWRhOnBhc3N3b3Jk",
        "Token abc",
        "Bearer " + "a" * 5000,
        "Bearer \u00e9t\u00e9",
    ],
    ids=["no-token", "blank", "garbage", "basic", "other-scheme", "huge", "non-ascii"],
)
async def test_malformed_authorization_headers_are_401(
    client: httpx.AsyncClient, expect_problem: Problem, authorization: str
) -> None:
    response = await client.get(
        "/api/auth/me", headers={b"Authorization": authorization.encode("utf-8")}
    )

    expect_problem(response, 401)


async def test_401_answers_say_how_to_authenticate(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/me")

    assert response.headers["www-authenticate"].lower().startswith("bearer")


async def test_the_access_token_carries_every_required_claim(
    genuine: tuple[dict[str, str], Claims], clock: FakeClock
) -> None:
    _, claims = genuine

    assert claims.keys() >= set(CLAIMS)
    assert claims["iat"] == int(clock.now().timestamp())
    assert claims["exp"] == int((clock.now() + timedelta(seconds=900)).timestamp())


async def test_access_tokens_are_hs256(genuine: tuple[dict[str, str], Claims]) -> None:
    auth, _ = genuine

    header = jwt.get_unverified_header(auth["Authorization"].removeprefix("Bearer "))

    assert header["alg"] == "HS256"


# --- CSRF ------------------------------------------------------------------------------


@pytest.fixture
async def browser_session(api: Any, client: httpx.AsyncClient) -> None:
    await api.sign_up("ada@example.com")
    await api.log_in("ada@example.com")


STATE_CHANGES = [
    ("POST", "/api/dashboard/metrics", {"metric_type": "views", "metric_value": 1}),
    ("POST", "/api/dashboard/metrics/batch", {"items": [{"metric_type": "v", "metric_value": 1}]}),
    ("POST", "/api/auth/logout", None),
    ("POST", "/api/auth/password", {"current_password": PASSWORD, "new_password": "x" * 12}),
    ("DELETE", "/api/auth/me", {"password": PASSWORD}),
    ("POST", "/api/auth/refresh", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), STATE_CHANGES, ids=[f"{m} {p}" for m, p, _ in STATE_CHANGES]
)
@pytest.mark.parametrize("csrf", ["missing", "wrong"])
async def test_cookie_requests_that_change_state_need_the_csrf_token(
    client: httpx.AsyncClient,
    browser_session: None,
    expect_problem: Problem,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    csrf: str,
) -> None:
    headers = {"X-CSRFToken": "0" * 64} if csrf == "wrong" else {}

    response = await client.request(method, path, json=body, headers=headers)

    expect_problem(response, 403)
    assert (await client.get("/api/auth/me")).status_code == 200
    assert (await client.get("/api/dashboard/metrics")).json()["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        (*change, status)
        for change, status in zip(STATE_CHANGES, [201, 201, 204, 204, 204, 200], strict=True)
    ],
    ids=[f"{m} {p}" for m, p, _ in STATE_CHANGES],
)
async def test_cookie_requests_with_the_csrf_token_go_through(
    client: httpx.AsyncClient,
    api: Any,
    browser_session: None,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
) -> None:
    response = await client.request(method, path, json=body, headers=api.csrf(client))

    assert response.status_code == status, response.text


async def test_bearer_requests_need_no_csrf_token_even_from_a_browser_with_cookies(
    client: httpx.AsyncClient, api: Any, browser_session: None
) -> None:
    auth = await api.bearer("ada@example.com")

    response = await client.post(
        "/api/dashboard/metrics", json={"metric_type": "views", "metric_value": 1}, headers=auth
    )

    assert response.status_code == 201


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/readyz",
        "/api/auth/me",
        "/api/dashboard/metrics",
        "/api/dashboard/metrics?limit=0",  # 400
        "/no/such/path",  # 404, answered before any middleware
        "/api/auth/signup",  # 405
    ],
)
async def test_any_get_response_sets_the_csrf_cookie(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    cookie = set_cookies(response)["csrftoken"]
    assert "httponly" not in cookie
    assert cookie["path"] == "/"
    assert client.cookies["csrftoken"]


async def test_a_get_keeps_the_csrf_cookie_the_browser_already_has(
    client: httpx.AsyncClient, api: Any
) -> None:
    first = (await client.get("/healthz")).cookies["csrftoken"]

    again = await client.get("/healthz")

    assert "csrftoken" not in set_cookies(again)
    assert client.cookies["csrftoken"] == first
    # The token issued on a GET is one the CSRF check accepts.
    await api.sign_up("ada@example.com")
    await api.log_in("ada@example.com")
    assert client.cookies["csrftoken"] == first
    response = await client.post("/api/auth/logout", headers={"X-CSRFToken": first})
    assert response.status_code == 204, response.text


@pytest.mark.parametrize("path", ["/api/auth/signup", "/api/auth/login", "/api/auth/token"])
async def test_signing_in_needs_no_csrf_token_even_with_old_session_cookies(
    client: httpx.AsyncClient, api: Any, new_browser: Browser, path: str
) -> None:
    """A browser restarted after a login keeps its refresh cookie (14 days) but has
    lost its csrftoken (a session cookie); it must still be able to sign in."""
    await api.sign_up("ada@example.com")
    await api.log_in("ada@example.com")
    returning = new_browser()
    refresh = client.cookies["engage_refresh"]
    returning.cookies.set("engage_refresh", refresh, domain="testserver.local", path="/api/auth")

    email = "bob@example.com" if path.endswith("signup") else "ada@example.com"
    response = await returning.post(path, json={"email": email, "password": PASSWORD})

    assert response.status_code in (200, 201), response.text


# --- origins and CORS ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/auth/signup", "/api/auth/login", "/api/auth/token"])
@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://app.example.com.evil"])
async def test_signing_in_from_a_foreign_origin_is_refused(
    client: httpx.AsyncClient, api: Any, expect_problem: Problem, path: str, origin: str
) -> None:
    await api.sign_up("ada@example.com")
    email = "bob@example.com" if path.endswith("signup") else "ada@example.com"

    response = await client.post(
        path, json={"email": email, "password": PASSWORD}, headers={"Origin": origin}
    )

    expect_problem(response, 403)
    assert not [c for c in response.headers.get_list("set-cookie") if c.startswith("engage_")]


@pytest.mark.parametrize("path", ["/api/auth/signup", "/api/auth/login", "/api/auth/token"])
@pytest.mark.parametrize("origin", [TRUSTED_ORIGIN, "http://testserver.local"])
async def test_signing_in_from_a_listed_origin_or_the_same_origin_is_allowed(
    client: httpx.AsyncClient, api: Any, path: str, origin: str
) -> None:
    await api.sign_up("ada@example.com")
    email = "bob@example.com" if path.endswith("signup") else "ada@example.com"

    response = await client.post(
        path, json={"email": email, "password": PASSWORD}, headers={"Origin": origin}
    )

    assert response.status_code in (200, 201), response.text


async def test_cors_preflight_from_a_listed_origin_allows_credentials_and_the_csrf_header(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(
        "/api/dashboard/metrics",
        headers={
            "Origin": TRUSTED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-csrftoken, idempotency-key",
        },
    )

    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == TRUSTED_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"content-type", "x-csrftoken", "idempotency-key"} <= allowed


async def test_cors_answers_a_listed_origin_and_no_other(client: httpx.AsyncClient) -> None:
    listed = await client.get("/healthz", headers={"Origin": TRUSTED_ORIGIN})
    foreign = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    preflight = await client.options(
        "/api/dashboard/metrics",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )

    assert listed.headers["access-control-allow-origin"] == TRUSTED_ORIGIN
    assert "access-control-allow-origin" not in foreign.headers
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_lets_a_listed_origin_read_retry_after_the_request_id_and_the_challenge(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    response = await client.get("/api/auth/me", headers={"Origin": TRUSTED_ORIGIN})

    expect_problem(response, 401)
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"retry-after", "x-request-id", "www-authenticate"} <= exposed


# --- cookie flags ------------------------------------------------------------------------


@pytest.fixture
def environ(environ: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """Indirectly parametrized with a bool: ENGAGE_COOKIE_SECURE."""
    secure = getattr(request, "param", None)
    if secure is None:
        return environ
    return {**environ, "ENGAGE_COOKIE_SECURE": str(secure).lower()}


@pytest.mark.parametrize("environ", [True, False], ids=["secure", "insecure"], indirect=True)
async def test_cookies_are_secure_exactly_when_configured(
    environ: dict[str, str], client: httpx.AsyncClient, api: Any, new_browser: Browser
) -> None:
    secure = environ["ENGAGE_COOKIE_SECURE"] == "true"
    await api.sign_up("ada@example.com")

    login = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    fresh_get = await new_browser().get("/healthz")

    cookies = set_cookies(login)
    assert cookies.keys() == {"engage_access", "engage_refresh", "csrftoken"}
    assert set_cookies(fresh_get).keys() == {"csrftoken"}
    for cookie in [*cookies.values(), *set_cookies(fresh_get).values()]:
        assert ("secure" in cookie) is secure


async def test_logout_clears_the_cookies_with_the_same_scope(
    client: httpx.AsyncClient, api: Any, browser_session: None
) -> None:
    response = await client.post("/api/auth/logout", headers=api.csrf(client))

    cookies = set_cookies(response)
    assert cookies["engage_access"]["max-age"] == "0"
    assert cookies["engage_access"]["path"] == "/"
    assert cookies["engage_refresh"]["max-age"] == "0"
    assert cookies["engage_refresh"]["path"] == "/api/auth"
    assert "engage_access" not in client.cookies
    assert "engage_refresh" not in client.cookies
