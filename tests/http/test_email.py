"""Contract §7 over HTTP and PostgreSQL: verification, forgotten passwords and new
addresses, each link read from the outbox directory the app's sender writes to."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from engage_core.testing import FakeClock
from engage_http.controllers.email import FORGOT_TAKES_AT_LEAST
from support.mail import mail_to, read_outbox, text_of, token_in
from support.waiting import rows_once

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new passphrase"
Problem = Callable[..., dict[str, Any]]
Rows = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    # These tests count the mails of contract §7; new-device notices are test_device_sessions'.
    return {**environ, "ENGAGE_NEW_DEVICE_NOTICE": "false"}


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def token_for(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    response = await client.post("/api/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def me(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/api/auth/me", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def signed_up(api: Any, outbox: Path, email: str) -> str:
    """Sign up; the token of the verification link mailed to ``email``."""
    await api.sign_up(email)
    [verification] = await mail_to(outbox, email)
    return token_in(verification)


# --- verification -----------------------------------------------------------------


async def test_signup_mails_a_link_that_verifies_the_address(
    client: httpx.AsyncClient, api: Any, outbox: Path
) -> None:
    await api.sign_up("ada@example.com")
    auth = bearer(await token_for(client, "ada@example.com"))
    assert await me(client, auth) == {
        **(await me(client, auth)),
        "email_verified": False,
        "mfa_enabled": False,
    }
    [mail] = await mail_to(outbox, "ada@example.com")
    assert mail["Subject"] == "Verify your email address for engage-suite"
    assert "http://127.0.0.1:8000/verify-email#token=" in text_of(mail)
    assert mail["Message-ID"]
    assert mail["Date"]
    assert mail["From"]

    response = await client.post("/api/auth/verify", json={"token": token_in(mail)})
    assert response.status_code == 204, response.text
    assert (await me(client, auth))["email_verified"] is True


async def test_international_addresses_are_written_as_mail_programs_read_them(
    api: Any, outbox: Path
) -> None:
    # An international domain as its A-label; a non-ASCII mailbox name in UTF-8 (RFC
    # 6532), never as an encoded word, which no mail program takes inside an address.
    await api.sign_up("ada@exämple.com")
    await api.sign_up("jürgen@example.com")
    await mail_to(outbox, "ada@xn--exmple-cua.com")
    [mail] = await mail_to(outbox, "jürgen@example.com")
    assert "jürgen@example.com" in text_of(mail)
    assert await asyncio.to_thread(to_lines, outbox) == [
        b"To: ada@xn--exmple-cua.com",
        "To: jürgen@example.com".encode(),
    ]


def to_lines(outbox: Path) -> list[bytes]:
    """The ``To`` line of each file in the outbox, as written."""
    heads = [path.read_bytes().partition(b"\n\n")[0] for path in sorted(outbox.glob("*.eml"))]
    return [line for head in heads for line in head.splitlines() if line.startswith(b"To: ")]


async def test_a_link_works_once_even_when_two_requests_race(
    client: httpx.AsyncClient, api: Any, outbox: Path, expect_problem: Problem
) -> None:
    token = await signed_up(api, outbox, "ada@example.com")
    answers = await asyncio.gather(
        *(client.post("/api/auth/verify", json={"token": token}) for _ in range(4))
    )
    assert sorted(r.status_code for r in answers) == [204, 400, 400, 400]
    again = await client.post("/api/auth/verify", json={"token": token})
    assert expect_problem(again, 400)["type"].endswith(":invalid-token")


@pytest.mark.parametrize(
    "token", ["A" * 43, "short", "not a token at all!", "x" * 200, "", "../../etc"]
)
async def test_an_unknown_token_is_one_400(
    client: httpx.AsyncClient, expect_problem: Problem, token: str
) -> None:
    for path in ("/api/auth/verify", "/api/auth/email/confirm"):
        answer = await client.post(path, json={"token": token})
        assert expect_problem(answer, 400)["type"].endswith(":invalid-token")
    answer = await client.post(
        "/api/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert expect_problem(answer, 400)["type"].endswith(":invalid-token")


async def test_a_token_of_another_purpose_is_refused(
    client: httpx.AsyncClient, api: Any, outbox: Path, expect_problem: Problem
) -> None:
    token = await signed_up(api, outbox, "ada@example.com")
    answer = await client.post(
        "/api/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    expect_problem(answer, 400)
    assert (await client.post("/api/auth/verify", json={"token": token})).status_code == 204


async def test_a_verification_link_expires_after_48_hours(
    client: httpx.AsyncClient, api: Any, outbox: Path, clock: FakeClock, expect_problem: Problem
) -> None:
    token = await signed_up(api, outbox, "ada@example.com")
    clock.advance(48 * 3600)
    expect_problem(await client.post("/api/auth/verify", json={"token": token}), 400)


async def test_tokens_are_stored_as_sha256_hashes_only(api: Any, outbox: Path, db: Rows) -> None:
    token = await signed_up(api, outbox, "ada@example.com")
    [(stored, purpose)] = db("SELECT token_hash, purpose FROM one_time_tokens")
    assert purpose == "verify_email"
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert len(token) >= 22  # at least 128 random bits, URL-safe base64


async def test_verification_can_be_asked_for_again_until_verified(
    client: httpx.AsyncClient, api: Any, outbox: Path
) -> None:
    first = await signed_up(api, outbox, "ada@example.com")
    auth = bearer(await token_for(client, "ada@example.com"))
    response = await client.post("/api/auth/verify/request", headers=auth)
    assert response.status_code == 202, response.text
    _, again = await mail_to(outbox, "ada@example.com", count=2)
    assert token_in(again) != first
    assert (
        await client.post("/api/auth/verify", json={"token": token_in(again)})
    ).status_code == 204
    assert (await client.post("/api/auth/verify/request", headers=auth)).status_code == 202
    await asyncio.sleep(0.2)
    assert len([m for m in read_outbox(outbox) if "Verify" in str(m["Subject"])]) == 2


async def test_asking_for_verification_needs_a_session(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    expect_problem(await client.post("/api/auth/verify/request"), 401)


async def test_a_failed_signup_queues_no_mail(
    client: httpx.AsyncClient, api: Any, outbox: Path, db: Rows
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    response = await client.post(
        "/api/auth/signup", json={"email": "ADA@example.com", "password": PASSWORD}
    )
    assert response.status_code == 409
    assert db("SELECT count(*) FROM mail_outbox") == [(1,)]


async def test_a_sent_mail_is_recorded_and_its_link_dropped(
    api: Any, outbox: Path, db: Rows
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    [(status, body, link, receipt)] = await rows_once(
        db,
        "SELECT status, text_body, link, receipt FROM mail_outbox",
        lambda rows: rows[0][0] == "sent",
    )
    assert (status, body, link) == ("sent", "", None)
    assert receipt.endswith(".eml")


class TestRequiredVerification:
    @pytest.fixture
    def environ(self, environ: dict[str, str]) -> dict[str, str]:
        return {**environ, "ENGAGE_REQUIRE_VERIFIED_EMAIL": "true"}

    async def test_login_is_refused_until_the_address_is_verified(
        self, client: httpx.AsyncClient, api: Any, outbox: Path, expect_problem: Problem
    ) -> None:
        token = await signed_up(api, outbox, "ada@example.com")
        credentials = {"email": "ada@example.com", "password": PASSWORD}
        for path in ("/api/auth/login", "/api/auth/token"):
            refused = expect_problem(await client.post(path, json=credentials), 403)
            assert refused["type"].endswith(":email-not-verified")
            assert "verify" in refused["detail"]
        wrong = {**credentials, "password": "not the password"}
        expect_problem(await client.post("/api/auth/login", json=wrong), 401)
        assert (await client.post("/api/auth/verify", json={"token": token})).status_code == 204
        assert (await client.post("/api/auth/login", json=credentials)).status_code == 200


# --- a forgotten password ---------------------------------------------------------


async def test_forgot_password_answers_the_same_whatever_the_email(
    client: httpx.AsyncClient, api: Any, outbox: Path
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    known = await client.post("/api/auth/password/forgot", json={"email": "ADA@example.com"})
    unknown = await client.post("/api/auth/password/forgot", json={"email": "bob@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    [_, reset] = await mail_to(outbox, "ada@example.com", count=2)
    assert "/reset-password#token=" in text_of(reset)
    [nobody] = await mail_to(outbox, "bob@example.com")
    assert "no engage-suite account uses this address" in " ".join(text_of(nobody).split())
    assert "#token=" not in text_of(nobody)


async def test_forgot_password_takes_its_fixed_time_whatever_the_email(
    client: httpx.AsyncClient, api: Any, outbox: Path
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    for email in ("ada@example.com", "bob@example.com"):
        started = time.monotonic()
        answer = await client.post("/api/auth/password/forgot", json={"email": email})
        took = time.monotonic() - started
        assert answer.status_code == 202
        # At least the fixed time, far above what either costs: the same for both.
        assert took >= FORGOT_TAKES_AT_LEAST, email


async def test_forgot_password_refuses_a_malformed_email(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    answer = await client.post("/api/auth/password/forgot", json={"email": "not an email"})
    expect_problem(answer, 422, fields=["email"])


async def test_a_reset_sets_the_password_and_ends_every_session(
    client: httpx.AsyncClient,
    api: Any,
    outbox: Path,
    new_browser: Callable[[], httpx.AsyncClient],
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    browser = new_browser()
    await api.log_in("ada@example.com", client=browser)
    auth = bearer(await token_for(client, "ada@example.com"))
    await client.post("/api/auth/password/forgot", json={"email": "ada@example.com"})
    [_, reset] = await mail_to(outbox, "ada@example.com", count=2)

    answer = await client.post(
        "/api/auth/password/reset", json={"token": token_in(reset), "new_password": NEW_PASSWORD}
    )
    assert answer.status_code == 204, answer.text
    assert (await browser.get("/api/auth/me")).status_code == 401
    assert (await client.get("/api/auth/me", headers=auth)).status_code == 401
    old = {"email": "ada@example.com", "password": PASSWORD}
    assert (await client.post("/api/auth/token", json=old)).status_code == 401
    fresh = bearer(await token_for(client, "ada@example.com", NEW_PASSWORD))
    assert (await me(client, fresh))["email_verified"] is True  # the link reached the address
    [*_, notice] = await mail_to(outbox, "ada@example.com", count=3)
    assert notice["Subject"] == "Your engage-suite password was reset"
    assert "If this was not you" in text_of(notice)


async def test_a_reset_link_works_once_and_only_the_newest(
    client: httpx.AsyncClient, api: Any, outbox: Path, expect_problem: Problem
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    for _ in range(2):
        await client.post("/api/auth/password/forgot", json={"email": "ada@example.com"})
    [_, older, newer] = await mail_to(outbox, "ada@example.com", count=3)

    def reset(token: str) -> Any:
        return client.post(
            "/api/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
        )

    expect_problem(await reset(token_in(older)), 400)
    assert (await reset(token_in(newer))).status_code == 204
    expect_problem(await reset(token_in(newer)), 400)


async def test_a_reset_link_expires_after_an_hour(
    client: httpx.AsyncClient, api: Any, outbox: Path, clock: FakeClock, expect_problem: Problem
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    await client.post("/api/auth/password/forgot", json={"email": "ada@example.com"})
    [_, reset] = await mail_to(outbox, "ada@example.com", count=2)
    clock.advance(3600)
    answer = await client.post(
        "/api/auth/password/reset", json={"token": token_in(reset), "new_password": NEW_PASSWORD}
    )
    expect_problem(answer, 400)


async def test_a_reset_refuses_a_short_password_and_keeps_the_link(
    client: httpx.AsyncClient, api: Any, outbox: Path, expect_problem: Problem
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    await client.post("/api/auth/password/forgot", json={"email": "ada@example.com"})
    [_, reset] = await mail_to(outbox, "ada@example.com", count=2)
    body = {"token": token_in(reset), "new_password": "short"}
    expect_problem(
        await client.post("/api/auth/password/reset", json=body), 422, fields=["new_password"]
    )
    body["new_password"] = NEW_PASSWORD
    assert (await client.post("/api/auth/password/reset", json=body)).status_code == 204


async def test_forgot_password_is_limited_per_email(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    body = {"email": "ada@example.com"}
    for _ in range(5):
        assert (await client.post("/api/auth/password/forgot", json=body)).status_code == 202
    refused = await client.post("/api/auth/password/forgot", json=body)
    expect_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0
    other = await client.post("/api/auth/password/forgot", json={"email": "bob@example.com"})
    assert other.status_code == 202


async def test_forgot_password_is_limited_per_client_address(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    for number in range(10):
        body = {"email": f"user{number}@example.com"}
        assert (await client.post("/api/auth/password/forgot", json=body)).status_code == 202
    refused = await client.post("/api/auth/password/forgot", json={"email": "new@example.com"})
    expect_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0


async def test_a_password_change_sends_a_notice_and_voids_reset_links(
    client: httpx.AsyncClient, api: Any, outbox: Path, expect_problem: Problem
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    await client.post("/api/auth/password/forgot", json={"email": "ada@example.com"})
    [_, reset] = await mail_to(outbox, "ada@example.com", count=2)
    auth = bearer(await token_for(client, "ada@example.com"))
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert (await client.post("/api/auth/password", json=change, headers=auth)).status_code == 204
    [*_, notice] = await mail_to(outbox, "ada@example.com", count=3)
    assert notice["Subject"] == "Your engage-suite password was changed"
    answer = await client.post(
        "/api/auth/password/reset", json={"token": token_in(reset), "new_password": PASSWORD}
    )
    expect_problem(answer, 400)


# --- a new address -----------------------------------------------------------------


async def test_an_address_changes_once_confirmed_from_the_new_one(
    client: httpx.AsyncClient, api: Any, outbox: Path
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    auth = bearer(await token_for(client, "ada@example.com"))
    body = {"new_email": "ada@new.example", "password": PASSWORD}
    answer = await client.post("/api/auth/email", json=body, headers=auth)
    assert answer.status_code == 202, answer.text
    [confirm] = await mail_to(outbox, "ada@new.example")
    [_, notice] = await mail_to(outbox, "ada@example.com", count=2)
    assert "ada@new.example" in text_of(notice)
    assert "#token=" not in text_of(notice)
    assert (await me(client, auth))["email"] == "ada@example.com"  # not before it is confirmed

    answer = await client.post("/api/auth/email/confirm", json={"token": token_in(confirm)})
    assert answer.status_code == 204, answer.text
    now = await me(client, auth)
    assert (now["email"], now["email_verified"]) == ("ada@new.example", True)
    await token_for(client, "ada@new.example")
    gone = {"email": "ada@example.com", "password": PASSWORD}
    assert (await client.post("/api/auth/token", json=gone)).status_code == 401


async def test_an_address_change_is_refused_without_the_password_or_for_a_taken_address(
    client: httpx.AsyncClient, api: Any, outbox: Path, expect_problem: Problem
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    await signed_up(api, outbox, "bob@example.com")
    auth = bearer(await token_for(client, "ada@example.com"))

    def change(new_email: str, password: str = PASSWORD) -> Any:
        body = {"new_email": new_email, "password": password}
        return client.post("/api/auth/email", json=body, headers=auth)

    expect_problem(await change("ada@new.example", "not the password"), 403)
    expect_problem(await change("BOB@example.com"), 409)
    expect_problem(await change("ADA@example.com"), 422, fields=["new_email"])
    expect_problem(await change("nonsense"), 422, fields=["new_email"])
    expect_problem(
        await client.post(
            "/api/auth/email", json={"new_email": "a@b.example", "password": PASSWORD}
        ),
        401,
    )


async def test_address_change_mails_are_limited_per_account(
    client: httpx.AsyncClient, api: Any, outbox: Path, db: Rows, expect_problem: Problem
) -> None:
    # Each request mails an address the account names, or tells whether an account has
    # it: without a limit, a signed-in user could make engage mail anyone as often as
    # it liked, or try every address.
    await signed_up(api, outbox, "ada@example.com")
    await signed_up(api, outbox, "bob@example.com")
    auth = bearer(await token_for(client, "ada@example.com"))

    def change(new_email: str) -> Any:
        body = {"new_email": new_email, "password": PASSWORD}
        return client.post("/api/auth/email", json=body, headers=auth)

    assert (await change("bob@example.com")).status_code == 409
    for _ in range(4):
        answer = await change("someone@else.example")
        assert answer.status_code == 202, answer.text
    for address in ("someone@else.example", "bob@example.com"):
        refused = await change(address)
        expect_problem(refused, 429)
        assert int(refused.headers["Retry-After"]) > 0
    mailed = "SELECT count(*) FROM mail_outbox WHERE recipient = 'someone@else.example'"
    assert db(mailed) == [(4,)]


async def test_confirming_an_address_taken_meanwhile_is_a_conflict(
    client: httpx.AsyncClient, api: Any, outbox: Path, expect_problem: Problem
) -> None:
    await signed_up(api, outbox, "ada@example.com")
    auth = bearer(await token_for(client, "ada@example.com"))
    body = {"new_email": "shared@example.com", "password": PASSWORD}
    assert (await client.post("/api/auth/email", json=body, headers=auth)).status_code == 202
    [confirm] = await mail_to(outbox, "shared@example.com")
    await api.sign_up("Shared@example.com")
    answer = await client.post("/api/auth/email/confirm", json={"token": token_in(confirm)})
    expect_problem(answer, 409)
    assert (await me(client, auth))["email"] == "ada@example.com"


async def test_an_address_change_voids_the_older_links(
    client: httpx.AsyncClient, api: Any, outbox: Path, expect_problem: Problem
) -> None:
    verify = await signed_up(api, outbox, "ada@example.com")
    auth = bearer(await token_for(client, "ada@example.com"))
    body = {"new_email": "ada@new.example", "password": PASSWORD}
    await client.post("/api/auth/email", json=body, headers=auth)
    [confirm] = await mail_to(outbox, "ada@new.example")
    assert (
        await client.post("/api/auth/email/confirm", json={"token": token_in(confirm)})
    ).status_code == 204
    expect_problem(await client.post("/api/auth/verify", json={"token": verify}), 400)
