"""GET /api/auth/activity: the user's own auth events, newest first, in keyset pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

PASSWORD = "correct horse battery staple"
Problem = Callable[..., dict[str, Any]]
Rows = Callable[..., list[tuple[Any, ...]]]
Browser = Callable[[], httpx.AsyncClient]


async def kinds(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> list[str]:
    response = await client.get("/api/auth/activity", headers=headers)
    assert response.status_code == 200, response.text
    return [item["kind"] for item in response.json()["items"]]


async def test_sign_up_logins_failures_password_change_and_logout_are_recorded(
    api: Any, new_browser: Browser
) -> None:
    browser = new_browser()
    await api.sign_up("ada@example.com", client=browser)
    failed = await browser.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": "not the password"}
    )
    assert failed.status_code == 401
    await api.log_in("ada@example.com", client=browser)
    changed = await browser.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase"},
        headers=api.csrf(browser),
    )
    assert changed.status_code == 204
    auth = await api.bearer("ada@example.com", "another long passphrase")
    assert (await browser.post("/api/auth/logout", headers=api.csrf(browser))).status_code == 204

    assert await kinds(api.client, auth) == [
        "logout",
        "login",
        "password.changed",
        "login",
        "login.failed",
        "signup",
    ]


async def test_an_entry_has_time_address_and_user_agent_and_nothing_else(
    api: Any, new_browser: Browser
) -> None:
    browser = new_browser()
    browser.headers["User-Agent"] = "Mozilla/5.0 (Macintosh) Safari/605.1.15"
    await api.sign_up("ada@example.com", client=browser)
    await api.log_in("ada@example.com", client=browser)

    newest = (await browser.get("/api/auth/activity")).json()["items"][0]

    assert set(newest) == {"kind", "at", "ip", "user_agent"}
    assert newest["kind"] == "login"
    assert newest["user_agent"] == "Mozilla/5.0 (Macintosh) Safari/605.1.15"
    assert newest["ip"] == "testclient"  # the peer the test client reports


async def test_pages_follow_the_cursor_to_the_end(api: Any) -> None:
    auth = await api.new_user("ada@example.com")
    for _ in range(4):
        await api.bearer("ada@example.com")

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/api/auth/activity", params=params, headers=auth)).json()
        seen.extend(item["at"] + item["kind"] for item in page["items"])
        assert len(page["items"]) <= 2
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == 6  # signup and five logins


async def test_each_user_sees_only_their_own_activity(api: Any, expect_problem: Problem) -> None:
    ada = await api.new_user("ada@example.com")
    await api.bearer("ada@example.com")
    bob = await api.new_user("bob@example.com")
    ada_cursor = (
        await api.client.get("/api/auth/activity", params={"limit": 1}, headers=ada)
    ).json()["next_cursor"]

    assert await kinds(api.client, bob) == ["login", "signup"]
    response = await api.client.get(
        "/api/auth/activity", params={"cursor": ada_cursor}, headers=bob
    )
    expect_problem(response, 400, fields=["cursor"])


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"cursor": "nope"}, "cursor")],
)
async def test_bad_paging_is_400(
    api: Any, params: dict[str, str], field: str, expect_problem: Problem
) -> None:
    auth = await api.new_user("ada@example.com")

    response = await api.client.get("/api/auth/activity", params=params, headers=auth)

    expect_problem(response, 400, fields=[field])


async def test_failed_logins_on_an_email_no_account_has_are_kept_for_operators(
    api: Any, db: Rows
) -> None:
    response = await api.client.post(
        "/api/auth/login", json={"email": "Nobody@Example.com", "password": "a guess at it"}
    )

    assert response.status_code == 401
    assert db("SELECT user_id, email, kind FROM activity") == [
        (None, "nobody@example.com", "login.failed")
    ]


async def test_no_password_or_token_ever_reaches_the_log(
    api: Any, new_browser: Browser, db: Rows
) -> None:
    browser = new_browser()
    await api.sign_up("ada@example.com", client=browser)
    login = await api.log_in("ada@example.com", client=browser)
    await browser.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": "a wrong password"}
    )
    token = (await api.bearer("ada@example.com"))["Authorization"].removeprefix("Bearer ")

    stored = str(db("SELECT * FROM activity"))

    secrets = [PASSWORD, "a wrong password", token, *login.cookies.values()]
    assert not [s for s in secrets if s in stored]


async def test_activity_needs_a_signed_in_caller(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    expect_problem(await client.get("/api/auth/activity"), 401)
