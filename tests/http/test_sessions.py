"""Sessions end when they should, at once: refresh rotation, logout, password change, deletion."""

from __future__ import annotations

from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new passphrase"
Problem = Callable[..., dict[str, Any]]
Browser = Callable[[], httpx.AsyncClient]


def cookie(client: httpx.AsyncClient, name: str) -> str:
    value = client.cookies.get(name)
    assert value, f"no {name} cookie"
    return value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cleared(response: httpx.Response) -> set[str]:
    """The cookies this response tells the browser to drop."""
    names = set()
    for header in response.headers.get_list("set-cookie"):
        for name, morsel in SimpleCookie(header).items():
            if morsel["max-age"] == "0":
                names.add(name)
    return names


async def refresh_cookie_only(browser: httpx.AsyncClient, refresh: str) -> dict[str, str]:
    """Give ``browser`` this refresh cookie and no access cookie (expired, as a browser
    drops it after 15 minutes); the CSRF header its state-changing requests need."""
    token = (await browser.get("/healthz")).cookies["csrftoken"]
    browser.cookies.set("engage_refresh", refresh, domain="testserver.local", path="/api/auth")
    return {"X-CSRFToken": token}


async def present_refresh_cookie(browser: httpx.AsyncClient, refresh: str) -> httpx.Response:
    """POST /api/auth/refresh from a browser holding only this refresh cookie."""
    return await browser.post(
        "/api/auth/refresh", headers=await refresh_cookie_only(browser, refresh)
    )


@pytest.fixture
async def ada(api: Any) -> dict[str, Any]:
    user: dict[str, Any] = await api.sign_up("ada@example.com")
    return user


# --- refresh ---------------------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token_and_the_access_cookie(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any]
) -> None:
    await api.log_in("ada@example.com")
    old_access, old_refresh = cookie(client, "engage_access"), cookie(client, "engage_refresh")

    response = await client.post("/api/auth/refresh", headers=api.csrf(client))

    assert response.status_code == 200, response.text
    assert response.json()["user"] == ada
    assert cookie(client, "engage_access") != old_access
    assert cookie(client, "engage_refresh") != old_refresh
    me = await client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json() == {**ada, "email_verified": False, "mfa_enabled": False}


async def test_refresh_without_a_refresh_cookie_is_401(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    response = await client.post("/api/auth/refresh")

    expect_problem(response, 401)


async def test_an_unknown_refresh_token_is_401(
    api: Any, ada: dict[str, Any], new_browser: Browser, expect_problem: Problem
) -> None:
    response = await present_refresh_cookie(new_browser(), "not-a-token-we-issued")

    expect_problem(response, 401)


async def test_a_replayed_refresh_token_ends_the_whole_session_family(
    client: httpx.AsyncClient,
    api: Any,
    ada: dict[str, Any],
    new_browser: Browser,
    expect_problem: Problem,
) -> None:
    await api.log_in("ada@example.com")
    stolen = cookie(client, "engage_refresh")
    rotated = await client.post("/api/auth/refresh", headers=api.csrf(client))
    assert rotated.status_code == 200
    new_access, new_refresh = cookie(client, "engage_access"), cookie(client, "engage_refresh")

    replay = await present_refresh_cookie(new_browser(), stolen)

    expect_problem(replay, 401)
    expect_problem(await client.get("/api/auth/me"), 401)
    expect_problem(await client.get("/api/auth/me", headers=bearer(new_access)), 401)
    expect_problem(await present_refresh_cookie(new_browser(), new_refresh), 401)


async def test_a_replay_leaves_the_users_other_sessions_alone(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any], new_browser: Browser
) -> None:
    other = await api.bearer("ada@example.com")
    await api.log_in("ada@example.com")
    stolen = cookie(client, "engage_refresh")
    await client.post("/api/auth/refresh", headers=api.csrf(client))

    await present_refresh_cookie(new_browser(), stolen)

    assert (await client.get("/api/auth/me", headers=other)).status_code == 200


async def test_refresh_tokens_are_stored_hashed(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any], db: Callable[..., list[Any]]
) -> None:
    await api.log_in("ada@example.com")
    refresh = cookie(client, "engage_refresh")

    stored = [token for (token,) in db("SELECT token FROM sessions")]

    assert stored
    assert all(refresh not in token for token in stored)


# --- logout ----------------------------------------------------------------------------


async def test_logout_ends_this_session_at_once(
    client: httpx.AsyncClient,
    api: Any,
    ada: dict[str, Any],
    new_browser: Browser,
    expect_problem: Problem,
) -> None:
    await api.log_in("ada@example.com")
    access, refresh = cookie(client, "engage_access"), cookie(client, "engage_refresh")

    response = await client.post("/api/auth/logout", headers=api.csrf(client))

    assert response.status_code == 204
    assert response.content == b""
    assert {"engage_access", "engage_refresh"} <= cleared(response)
    expect_problem(await client.get("/api/auth/me", headers=bearer(access)), 401)
    expect_problem(await present_refresh_cookie(new_browser(), refresh), 401)


async def test_logout_by_the_refresh_cookie_alone_ends_that_session(
    client: httpx.AsyncClient,
    api: Any,
    ada: dict[str, Any],
    new_browser: Browser,
    expect_problem: Problem,
) -> None:
    await api.log_in("ada@example.com")
    access, refresh = cookie(client, "engage_access"), cookie(client, "engage_refresh")
    other = await api.bearer("ada@example.com")
    browser = new_browser()
    csrf = await refresh_cookie_only(browser, refresh)

    response = await browser.post("/api/auth/logout", headers=csrf)

    assert response.status_code == 204
    assert {"engage_access", "engage_refresh"} <= cleared(response)
    expect_problem(await client.get("/api/auth/me", headers=bearer(access)), 401)
    expect_problem(await present_refresh_cookie(new_browser(), refresh), 401)
    assert (await client.get("/api/auth/me", headers=other)).status_code == 200


async def test_logout_by_the_refresh_cookie_needs_the_csrf_header(
    client: httpx.AsyncClient,
    api: Any,
    ada: dict[str, Any],
    new_browser: Browser,
    expect_problem: Problem,
) -> None:
    await api.log_in("ada@example.com")
    refresh = cookie(client, "engage_refresh")
    browser = new_browser()
    await refresh_cookie_only(browser, refresh)

    expect_problem(await browser.post("/api/auth/logout"), 403)
    assert (await present_refresh_cookie(new_browser(), refresh)).status_code == 200


async def test_logout_by_a_spent_refresh_cookie_is_401_and_ends_its_family(
    client: httpx.AsyncClient,
    api: Any,
    ada: dict[str, Any],
    new_browser: Browser,
    expect_problem: Problem,
) -> None:
    await api.log_in("ada@example.com")
    spent = cookie(client, "engage_refresh")
    assert (await client.post("/api/auth/refresh", headers=api.csrf(client))).status_code == 200
    browser = new_browser()
    csrf = await refresh_cookie_only(browser, spent)

    expect_problem(await browser.post("/api/auth/logout", headers=csrf), 401)
    expect_problem(await client.get("/api/auth/me"), 401)  # a replay: the family is over


async def test_logout_with_scope_current_keeps_the_users_other_sessions(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any], new_browser: Browser
) -> None:
    phone = await api.bearer("ada@example.com")
    laptop = new_browser()
    await api.log_in("ada@example.com", client=laptop)
    await api.log_in("ada@example.com")

    response = await client.post(
        "/api/auth/logout", params={"scope": "current"}, headers=api.csrf(client)
    )

    assert response.status_code == 204
    assert (await client.get("/api/auth/me", headers=phone)).status_code == 200
    assert (await laptop.get("/api/auth/me")).status_code == 200


async def test_logout_with_scope_all_ends_every_session_of_the_user(
    client: httpx.AsyncClient,
    api: Any,
    ada: dict[str, Any],
    new_browser: Browser,
    expect_problem: Problem,
) -> None:
    phone = await api.bearer("ada@example.com")
    laptop = new_browser()
    await api.log_in("ada@example.com", client=laptop)
    laptop_refresh = cookie(laptop, "engage_refresh")
    bob = await api.new_user("bob@example.com")
    await api.log_in("ada@example.com")

    response = await client.post(
        "/api/auth/logout", params={"scope": "all"}, headers=api.csrf(client)
    )

    assert response.status_code == 204
    expect_problem(await client.get("/api/auth/me"), 401)
    expect_problem(await client.get("/api/auth/me", headers=phone), 401)
    expect_problem(await laptop.get("/api/auth/me"), 401)
    expect_problem(await present_refresh_cookie(new_browser(), laptop_refresh), 401)
    assert (await client.get("/api/auth/me", headers=bob)).status_code == 200


async def test_logout_of_a_bearer_token_refuses_it_at_once(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any], expect_problem: Problem
) -> None:
    auth = await api.bearer("ada@example.com")

    response = await client.post("/api/auth/logout", headers=auth)

    assert response.status_code == 204
    expect_problem(await client.get("/api/auth/me", headers=auth), 401)


async def test_logout_refuses_an_unknown_scope(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any], expect_problem: Problem
) -> None:
    auth = await api.bearer("ada@example.com")

    response = await client.post("/api/auth/logout", params={"scope": "everything"}, headers=auth)

    expect_problem(response, 400)
    assert (await client.get("/api/auth/me", headers=auth)).status_code == 200


async def test_logout_without_credentials_is_401(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    expect_problem(await client.post("/api/auth/logout"), 401)


# --- password change ---------------------------------------------------------------------


async def test_password_change_ends_every_other_session(
    client: httpx.AsyncClient,
    api: Any,
    ada: dict[str, Any],
    new_browser: Browser,
    expect_problem: Problem,
) -> None:
    phone = await api.bearer("ada@example.com")
    laptop = new_browser()
    await api.log_in("ada@example.com", client=laptop)
    laptop_refresh = cookie(laptop, "engage_refresh")
    await api.log_in("ada@example.com")

    response = await client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=api.csrf(client),
    )

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get("/api/auth/me")).status_code == 200
    expect_problem(await client.get("/api/auth/me", headers=phone), 401)
    expect_problem(await laptop.get("/api/auth/me"), 401)
    expect_problem(await present_refresh_cookie(new_browser(), laptop_refresh), 401)


async def test_the_session_that_changed_the_password_can_still_refresh(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any]
) -> None:
    await api.log_in("ada@example.com")
    await client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=api.csrf(client),
    )

    response = await client.post("/api/auth/refresh", headers=api.csrf(client))

    assert response.status_code == 200


async def test_after_a_password_change_only_the_new_password_logs_in(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any], expect_problem: Problem
) -> None:
    auth = await api.bearer("ada@example.com")
    changed = await client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=auth,
    )
    assert changed.status_code == 204

    old = await client.post(
        "/api/auth/token", json={"email": "ada@example.com", "password": PASSWORD}
    )
    new = await client.post(
        "/api/auth/token", json={"email": "ada@example.com", "password": NEW_PASSWORD}
    )

    expect_problem(old, 401)
    assert new.status_code == 200


async def test_password_change_refuses_a_wrong_current_password(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any], expect_problem: Problem
) -> None:
    auth = await api.bearer("ada@example.com")
    other = await api.bearer("ada@example.com")

    response = await client.post(
        "/api/auth/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=auth,
    )

    expect_problem(response, 403)
    assert (await client.get("/api/auth/me", headers=other)).status_code == 200
    await api.bearer("ada@example.com", PASSWORD)


async def test_password_change_checks_the_new_password(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any], expect_problem: Problem
) -> None:
    auth = await api.bearer("ada@example.com")

    response = await client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=auth,
    )

    expect_problem(response, 422, fields=["new_password"])
    await api.bearer("ada@example.com", PASSWORD)


# --- deleting the account -------------------------------------------------------------------


async def test_account_deletion_removes_the_user_and_all_their_data(
    client: httpx.AsyncClient,
    api: Any,
    ada: dict[str, Any],
    db: Callable[..., list[Any]],
    expect_problem: Problem,
) -> None:
    phone = await api.bearer("ada@example.com")
    await api.record_batch(phone, [{"metric_type": "views", "metric_value": n} for n in range(3)])
    await api.log_in("ada@example.com")

    response = await client.request(
        "DELETE", "/api/auth/me", json={"password": PASSWORD}, headers=api.csrf(client)
    )

    assert response.status_code == 204
    assert response.content == b""
    assert {"engage_access", "engage_refresh"} <= cleared(response)
    expect_problem(await client.get("/api/auth/me", headers=phone), 401)
    expect_problem(
        await client.post(
            "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        ),
        401,
    )
    user_id = ada["id"]
    assert db("SELECT count(*) FROM users WHERE id = %s", user_id) == [(0,)]
    assert db("SELECT count(*) FROM engagement_metrics WHERE user_id = %s", user_id) == [(0,)]
    assert db("SELECT count(*) FROM sessions WHERE user_id = %s", user_id) == [(0,)]


async def test_a_deleted_accounts_email_is_free_again_and_starts_empty(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any]
) -> None:
    auth = await api.bearer("ada@example.com")
    await api.record(auth, metric_type="views", metric_value=1)
    deleted = await client.request(
        "DELETE", "/api/auth/me", json={"password": PASSWORD}, headers=auth
    )
    assert deleted.status_code == 204

    again = await api.sign_up("ADA@example.com", "a different password")
    fresh = await api.bearer("ada@example.com", "a different password")

    assert again["id"] != ada["id"]
    assert await api.list_all(fresh) == []
    summary = await client.get("/api/dashboard/summary", headers=fresh)
    assert summary.json()["series"] == []


async def test_account_deletion_refuses_a_wrong_password(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any], expect_problem: Problem
) -> None:
    auth = await api.bearer("ada@example.com")

    response = await client.request(
        "DELETE", "/api/auth/me", json={"password": "not my password"}, headers=auth
    )

    expect_problem(response, 403)
    assert (await client.get("/api/auth/me", headers=auth)).status_code == 200


async def test_account_deletion_needs_the_password(
    client: httpx.AsyncClient, api: Any, ada: dict[str, Any], expect_problem: Problem
) -> None:
    auth = await api.bearer("ada@example.com")

    response = await client.request("DELETE", "/api/auth/me", json={}, headers=auth)

    expect_problem(response, 422, fields=["password"])
    assert (await client.get("/api/auth/me", headers=auth)).status_code == 200
