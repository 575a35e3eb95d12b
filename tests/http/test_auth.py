"""Sign up, log in (cookies), get a bearer token, ask who I am: over PostgreSQL and the fakes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any
from uuid import UUID

import httpx
import pytest

from engage_adapters.bcrypt_hasher import BcryptPasswordHasher
from engage_core.testing import FakeClock

pytestmark = pytest.mark.parametrize("storage", ["postgres", "memory"])

PASSWORD = "correct horse battery staple"
LONGEST_EMAIL = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"  # 254
Problem = Callable[..., dict[str, Any]]


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each Set-Cookie header of ``response``, by cookie name."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def attributes(header: str) -> dict[str, str | bool]:
    morsel = next(iter(SimpleCookie(header).values()))
    return {k: v for k, v in morsel.items() if v}


# --- sign up ------------------------------------------------------------------------


async def test_signup_creates_an_account(client: httpx.AsyncClient, clock: FakeClock) -> None:
    response = await client.post(
        "/api/auth/signup", json={"email": "ada@example.com", "password": PASSWORD}
    )

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body.keys() == {"id", "email", "created_at"}
    assert UUID(body["id"])
    assert body["email"] == "ada@example.com"
    assert datetime.fromisoformat(body["created_at"]) == clock.now()


async def test_signup_stores_the_domain_lower_cased_and_keeps_the_local_part(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/auth/signup", json={"email": "Ada.Lovelace@Example.COM", "password": PASSWORD}
    )

    assert response.status_code == 201
    assert response.json()["email"] == "Ada.Lovelace@example.com"


async def test_signup_refuses_an_email_taken_in_another_letter_case(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    first = await client.post(
        "/api/auth/signup", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert first.status_code == 201

    again = await client.post(
        "/api/auth/signup", json={"email": "ADA@EXAMPLE.com", "password": "another password"}
    )

    expect_problem(again, 409)


@pytest.mark.parametrize(
    ("email", "password", "fields"),
    [
        ("not-an-email", PASSWORD, ["email"]),
        ("ada@example.com", "short", ["password"]),
        ("ada@example.com", "x" * 257, ["password"]),
        (LONGEST_EMAIL.replace("@", "@d"), PASSWORD, ["email"]),
        ("nope", "", ["email", "password"]),
    ],
    ids=["bad-email", "7-chars", "257-chars", "255-char-email", "both"],
)
async def test_signup_names_every_field_at_fault(
    client: httpx.AsyncClient,
    expect_problem: Problem,
    email: str,
    password: str,
    fields: list[str],
) -> None:
    response = await client.post("/api/auth/signup", json={"email": email, "password": password})

    expect_problem(response, 422, fields=fields)


async def test_an_email_of_254_characters_is_accepted(client: httpx.AsyncClient) -> None:
    assert len(LONGEST_EMAIL) == 254

    response = await client.post(
        "/api/auth/signup", json={"email": LONGEST_EMAIL, "password": PASSWORD}
    )

    assert response.status_code == 201, response.text
    assert response.json()["email"] == LONGEST_EMAIL


# --- passwords: any Unicode, 8 to 256 characters, no 72-byte truncation -------------------


@pytest.fixture
def hasher() -> Iterator[BcryptPasswordHasher]:
    """Real bcrypt (at its cheapest cost): the 72-byte limit is bcrypt's."""
    hasher = BcryptPasswordHasher(4)
    yield hasher
    hasher.close()


@pytest.mark.parametrize(
    "password",
    ["ü" * 40, "🔑" * 64 + "x" * 192, "pässwörd", " leading and trailing spaces "],
    ids=["80-bytes", "256-chars-448-bytes", "8-chars-unicode", "spaces"],
)
async def test_long_and_unicode_passwords_sign_up_and_log_in(
    client: httpx.AsyncClient, password: str
) -> None:
    signup = await client.post(
        "/api/auth/signup", json={"email": "ada@example.com", "password": password}
    )
    assert signup.status_code == 201, signup.text

    login = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": password}
    )

    assert login.status_code == 200, login.text


async def test_passwords_sharing_their_first_72_bytes_are_different(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    prefix = "p" * 72
    signup = await client.post(
        "/api/auth/signup", json={"email": "ada@example.com", "password": prefix + "-one"}
    )
    assert signup.status_code == 201

    wrong = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": prefix + "-two"}
    )
    truncated = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": prefix}
    )
    right = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": prefix + "-one"}
    )

    expect_problem(wrong, 401)
    expect_problem(truncated, 401)
    assert right.status_code == 200


# --- log in (browsers) ----------------------------------------------------------------


async def test_login_answers_the_user_and_when_the_access_expires(
    client: httpx.AsyncClient, api: Any, clock: FakeClock
) -> None:
    user = await api.sign_up("ada@example.com")

    response = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )

    assert response.status_code == 200
    body = response.json()
    assert body.keys() == {"user", "expires_at"}
    assert body["user"] == user
    assert datetime.fromisoformat(body["expires_at"]) == clock.now() + timedelta(seconds=900)


async def test_login_sets_the_access_refresh_and_csrf_cookies(
    client: httpx.AsyncClient, api: Any
) -> None:
    await api.sign_up("ada@example.com")

    response = await api.log_in("ada@example.com")

    cookies = set_cookies(response)
    assert cookies.keys() == {"engage_access", "engage_refresh", "csrftoken"}
    access = attributes(cookies["engage_access"])
    assert access["httponly"] is True
    assert str(access["samesite"]).lower() == "lax"
    assert access["path"] == "/"
    assert access["max-age"] == "900"
    refresh = attributes(cookies["engage_refresh"])
    assert refresh["httponly"] is True
    assert refresh["path"] == "/api/auth"
    assert int(str(refresh["max-age"])) == 14 * 24 * 3600
    csrf = attributes(cookies["csrftoken"])
    assert "httponly" not in csrf  # the page's script reads it to echo it
    assert csrf["path"] == "/"
    for header in cookies.values():
        assert "secure" not in attributes(header)  # ENGAGE_COOKIE_SECURE=false here


async def test_login_compares_emails_case_insensitively(
    client: httpx.AsyncClient, api: Any
) -> None:
    await api.sign_up("Ada@Example.com")

    response = await client.post(
        "/api/auth/login", json={"email": "aDA@EXAMPLE.COM", "password": PASSWORD}
    )

    assert response.status_code == 200
    assert response.json()["user"]["email"] == "Ada@example.com"


async def test_login_refuses_a_wrong_password(
    client: httpx.AsyncClient, api: Any, expect_problem: Problem
) -> None:
    await api.sign_up("ada@example.com")

    response = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD + "!"}
    )

    expect_problem(response, 401)
    assert not [c for c in response.headers.get_list("set-cookie") if c.startswith("engage_")]


async def test_the_access_cookie_authenticates_me(client: httpx.AsyncClient, api: Any) -> None:
    user = await api.sign_up("ada@example.com")
    await api.log_in("ada@example.com")

    response = await client.get("/api/auth/me")

    assert response.status_code == 200
    assert response.json() == {**user, "email_verified": False, "mfa_enabled": False}


async def test_me_without_credentials_is_401(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    response = await client.get("/api/auth/me")

    expect_problem(response, 401)


# --- bearer tokens (non-browser clients) ----------------------------------------------------


async def test_token_answers_a_bearer_token(
    client: httpx.AsyncClient, api: Any, claims_of: Callable[[str], dict[str, Any]]
) -> None:
    user = await api.sign_up("ada@example.com")

    response = await client.post(
        "/api/auth/token", json={"email": "ada@example.com", "password": PASSWORD}
    )

    assert response.status_code == 200
    body = response.json()
    assert body.keys() == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    claims = claims_of(body["access_token"])
    assert claims["sub"] == user["id"]
    assert claims["exp"] - claims["iat"] == 900


async def test_the_bearer_token_authenticates_me(client: httpx.AsyncClient, api: Any) -> None:
    user = await api.sign_up("ada@example.com")
    auth = await api.bearer("ada@example.com")

    response = await client.get("/api/auth/me", headers=auth)

    assert response.status_code == 200
    assert response.json() == {**user, "email_verified": False, "mfa_enabled": False}


async def test_token_refuses_bad_credentials(
    client: httpx.AsyncClient, api: Any, expect_problem: Problem
) -> None:
    await api.sign_up("ada@example.com")

    response = await client.post(
        "/api/auth/token", json={"email": "ada@example.com", "password": "not the password"}
    )

    expect_problem(response, 401)


async def test_a_bearer_token_wins_over_a_cookie(client: httpx.AsyncClient, api: Any) -> None:
    ada = await api.sign_up("ada@example.com")
    bob = await api.new_user("bob@example.com")
    await api.log_in("ada@example.com")  # the browser holds Ada's cookie

    response = await client.get("/api/auth/me", headers=bob)

    assert response.status_code == 200
    assert response.json()["id"] != ada["id"]
    assert response.json()["email"] == "bob@example.com"
