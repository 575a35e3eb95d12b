"""GET and DELETE /api/auth/sessions: a user sees each signed-in device and ends one at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.testing.transport import TestClientTransport as Transport

from engage_core.testing import FakeClock
from support.mail import mail_to, read_outbox, text_of

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Mobile/15E148"
LAPTOP = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
Problem = Callable[..., dict[str, Any]]
Browser = Callable[[], httpx.AsyncClient]
Rows = Callable[..., list[tuple[Any, ...]]]
BrowserAt = Callable[[str, str], httpx.AsyncClient]
PROXY = "10.0.0.1"


@pytest.fixture
def environ(environ: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    extra: dict[str, str] = getattr(request, "param", {})
    return {**environ, "ENGAGE_TRUSTED_PROXIES": "10.0.0.0/8", **extra}


class _AddressTransport(Transport):  # type: ignore[type-arg]
    """Requests into the running app from a browser at another client address."""

    def __init__(self, client: AsyncTestClient[Litestar], address: str) -> None:
        super().__init__(client=client)
        self.address = address

    def parse_request(self, request: httpx.Request) -> dict[str, Any]:
        scope = super().parse_request(request)
        scope["client"] = (self.address, 50000)
        return scope

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def browser_at(client: AsyncTestClient[Litestar]) -> AsyncIterator[BrowserAt]:
    opened: list[httpx.AsyncClient] = []

    def open_browser(address: str, user_agent: str) -> httpx.AsyncClient:
        browser = httpx.AsyncClient(
            base_url=client.base_url,
            transport=_AddressTransport(client, address),  # type: ignore[arg-type]
            headers={"User-Agent": user_agent},
        )
        opened.append(browser)
        return browser

    yield open_browser
    for browser in opened:
        await browser.aclose()


async def sign_in(browser: httpx.AsyncClient, forwarded_for: str) -> None:
    response = await browser.post(
        "/api/auth/login",
        json={"email": "ada@example.com", "password": "correct horse battery staple"},
        headers={"X-Forwarded-For": forwarded_for},
    )
    assert response.status_code == 200, response.text


@pytest.fixture
async def two_devices(
    api: Any, browser_at: BrowserAt
) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """Ada's phone, behind a trusted proxy, and her laptop, reaching the server directly."""
    await api.sign_up("ada@example.com")
    phone = browser_at(PROXY, PHONE)
    laptop = browser_at("2001:db8::42", LAPTOP + "\t\x7f  ")  # trimmed as it is kept
    await sign_in(phone, "198.51.100.7")
    # A client's own X-Forwarded-For is not believed: its peer is no trusted proxy.
    await sign_in(laptop, "192.0.2.99")
    return phone, laptop


async def listed(browser: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await browser.get("/api/auth/sessions")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_each_signed_in_device_is_listed_with_the_current_one_marked(
    two_devices: tuple[httpx.AsyncClient, httpx.AsyncClient], clock: FakeClock
) -> None:
    phone, laptop = two_devices

    items = await listed(laptop)

    assert {(i["user_agent"], i["ip"], i["current"]) for i in items} == {
        (PHONE, "198.51.100.7", False),
        (LAPTOP, "2001:db8::42", True),
    }
    assert all(i["created_at"] == i["last_seen_at"] for i in items)
    assert {i["id"] for i in items} == {i["id"] for i in await listed(phone)}


async def test_a_user_agent_is_kept_as_sent_in_utf_8_without_any_control_character(
    api: Any, browser_at: BrowserAt
) -> None:
    await api.sign_up("ada@example.com")
    # Sent as UTF-8 (which the server's HTTP layer reads as Latin-1), with C1's CSI (U+009B: a
    # terminal escape in `engage activity`) and a right-to-left override in it.
    tablet = browser_at("203.0.113.5", "-")
    tablet.headers = {"User-Agent": "Tablette (Ünï €)\u202e\u009b2J/1.0".encode()}
    await sign_in(tablet, "198.51.100.8")

    [item] = await listed(tablet)
    newest = (await tablet.get("/api/auth/activity")).json()["items"][0]

    assert item["user_agent"] == newest["user_agent"] == "Tablette (Ünï €) 2J/1.0"


async def test_a_session_ended_from_another_browser_is_refused_on_its_next_request(
    two_devices: tuple[httpx.AsyncClient, httpx.AsyncClient], api: Any
) -> None:
    phone, laptop = two_devices
    phone_id = next(i["id"] for i in await listed(laptop) if not i["current"])

    ended = await laptop.delete(f"/api/auth/sessions/{phone_id}", headers=api.csrf(laptop))

    assert ended.status_code == 204, ended.text
    assert (await phone.get("/api/auth/me")).status_code == 401
    assert (await phone.post("/api/auth/refresh", headers=api.csrf(phone))).status_code == 401
    assert [i["user_agent"] for i in await listed(laptop)] == [LAPTOP]


async def test_ending_needs_the_csrf_header_with_cookies(
    two_devices: tuple[httpx.AsyncClient, httpx.AsyncClient], expect_problem: Problem
) -> None:
    phone, laptop = two_devices
    phone_id = next(i["id"] for i in await listed(laptop) if not i["current"])

    expect_problem(await laptop.delete(f"/api/auth/sessions/{phone_id}"), 403)

    assert (await phone.get("/api/auth/me")).status_code == 200


@pytest.mark.parametrize(
    ("session_id", "status"),
    [("not-a-uuid", 400), ("00000000-0000-0000-0000-000000000000", 404)],
)
async def test_an_unknown_session_is_404_and_a_malformed_id_400(
    api: Any, session_id: str, status: int, expect_problem: Problem
) -> None:
    auth = await api.new_user("bob@example.com")

    response = await api.client.delete(f"/api/auth/sessions/{session_id}", headers=auth)

    body = expect_problem(response, status)
    if status == 400:
        assert body["title"] == "Invalid path parameter"
        assert body["errors"] == [
            {"field": "session_id", "message": "must be a session id (a UUID)"}
        ]


async def test_another_users_session_is_404_and_stays_live(
    two_devices: tuple[httpx.AsyncClient, httpx.AsyncClient], api: Any, expect_problem: Problem
) -> None:
    phone, _ = two_devices
    phone_id = (await listed(phone))[0]["id"]
    mallory = await api.new_user("mallory@example.com")

    response = await api.client.delete(f"/api/auth/sessions/{phone_id}", headers=mallory)

    expect_problem(response, 404)
    assert (await phone.get("/api/auth/me")).status_code == 200


async def test_a_sessions_id_and_sign_in_time_survive_a_refresh(
    two_devices: tuple[httpx.AsyncClient, httpx.AsyncClient], api: Any, db: Rows
) -> None:
    phone, _ = two_devices
    before = await listed(phone)
    elsewhere = {**api.csrf(phone), "X-Forwarded-For": "203.0.113.50"}

    refreshed = await phone.post("/api/auth/refresh", headers=elsewhere)

    assert refreshed.status_code == 200, refreshed.text
    after = await listed(phone)
    assert [(i["id"], i["created_at"]) for i in after] == [
        (i["id"], i["created_at"]) for i in before
    ]
    # The refresh came from another address: the session now shows it.
    assert {i["ip"] for i in after if i["current"]} == {"203.0.113.50"}
    assert db("SELECT count(*) FROM sessions WHERE user_agent = %s", PHONE) == [(2,)]


async def test_use_writes_last_seen_at_most_once_a_minute(
    two_devices: tuple[httpx.AsyncClient, httpx.AsyncClient], clock: FakeClock, db: Rows
) -> None:
    phone, _ = two_devices
    start = clock.now()

    def seen() -> set[Any]:
        return {
            row[0] for row in db("SELECT last_seen_at FROM sessions WHERE user_agent = %s", PHONE)
        }

    clock.advance(timedelta(seconds=30))
    assert (await phone.get("/api/dashboard/metrics")).status_code == 200
    assert seen() == {start}

    clock.advance(timedelta(seconds=31))
    assert (await phone.get("/api/dashboard/metrics")).status_code == 200
    assert (await phone.get("/api/dashboard/metrics")).status_code == 200
    assert seen() == {start + timedelta(seconds=61)}


async def test_ending_a_session_is_in_the_activity_log(
    two_devices: tuple[httpx.AsyncClient, httpx.AsyncClient], api: Any
) -> None:
    _, laptop = two_devices
    phone_id = next(i["id"] for i in await listed(laptop) if not i["current"])
    await laptop.delete(f"/api/auth/sessions/{phone_id}", headers=api.csrf(laptop))

    response = await laptop.get("/api/auth/activity")

    newest = response.json()["items"][0]
    assert (newest["kind"], newest["ip"], newest["user_agent"]) == (
        "session.ended",
        "2001:db8::42",
        LAPTOP,
    )


async def test_sessions_need_a_signed_in_caller(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    expect_problem(await client.get("/api/auth/sessions"), 401)


NOTICE = "New sign-in to your engage-suite account"


async def test_a_sign_in_from_a_new_device_mails_a_notice(
    two_devices: tuple[httpx.AsyncClient, httpx.AsyncClient], tmp_path: Path
) -> None:
    phone, _ = two_devices
    await sign_in(phone, "198.51.100.7")  # a device seen before: no notice

    # Sign-up's verification mail, then one notice: the first sign-in is no news;
    # the laptop's, after the phone's, is.
    mails = await mail_to(tmp_path / "outbox", "ada@example.com", count=2)
    await asyncio.sleep(0.2)  # and no third one follows

    assert len(read_outbox(tmp_path / "outbox")) == 2
    assert mails[1]["Subject"] == NOTICE
    assert LAPTOP in text_of(mails[1])
    assert "2001:db8::42" in text_of(mails[1])


async def test_a_client_that_names_no_user_agent_is_a_device_of_its_own(
    two_devices: tuple[httpx.AsyncClient, httpx.AsyncClient], browser_at: BrowserAt, tmp_path: Path
) -> None:
    script = browser_at("203.0.113.5", "")
    del script.headers["User-Agent"]
    await sign_in(script, "203.0.113.5")
    await sign_in(script, "203.0.113.5")  # seen before now: no notice

    mails = await mail_to(tmp_path / "outbox", "ada@example.com", count=3)
    await asyncio.sleep(0.2)

    assert len(read_outbox(tmp_path / "outbox")) == 3
    assert mails[2]["Subject"] == NOTICE
    assert "an unknown browser" in text_of(mails[2])


@pytest.mark.parametrize("environ", [{"ENGAGE_NEW_DEVICE_NOTICE": "false"}], indirect=True)
async def test_the_notice_can_be_turned_off(
    two_devices: tuple[httpx.AsyncClient, httpx.AsyncClient], db: Rows
) -> None:
    subjects = {row[0] for row in db("SELECT subject FROM mail_outbox")}

    assert subjects
    assert NOTICE not in subjects
