"""Signing in with the second factor in Chromium: the password, then a code computed
here from the set-up's secret (or a recovery code)."""

from __future__ import annotations

import re

import pyotp
from playwright.sync_api import Page, expect

from support.browser import PASSWORD, Accounts, Browsers, earlier_code


def turn_on(accounts: Accounts, email: str) -> tuple[pyotp.TOTP, list[str]]:
    """The second factor on through the API; the authenticator app and the recovery codes."""
    auth = accounts.bearer(email)
    started = accounts.http.post("/api/auth/mfa/totp", headers=auth)
    assert started.status_code == 200, started.text
    app = pyotp.TOTP(started.json()["secret"])
    confirmed = accounts.http.post(
        "/api/auth/mfa/totp/confirm", json={"code": earlier_code(app)}, headers=auth
    )
    assert confirmed.status_code == 200, confirmed.text
    return app, confirmed.json()["recovery_codes"]


def enter_password(page: Page, email: str) -> None:
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Two-step verification", level=1)).to_be_visible()


def test_a_password_alone_does_not_sign_in_and_the_code_does(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    app, _ = turn_on(accounts, email)
    page, _ = browsers.open()

    enter_password(page, email)
    expect(page.get_by_label("Code")).to_be_focused()
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("status")).to_contain_text("That code did not work.")

    page.get_by_label("Code").fill(app.now())
    page.get_by_role("button", name="Verify").click()

    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()


def test_a_recovery_code_signs_in_once(browsers: Browsers, accounts: Accounts) -> None:
    email = accounts.create()
    _, codes = turn_on(accounts, email)
    first, _ = browsers.open()
    second, _ = browsers.open()

    enter_password(first, email)
    first.get_by_label("Code").fill(codes[0])
    first.get_by_role("button", name="Verify").click()
    expect(first.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()

    enter_password(second, email)
    second.get_by_label("Code").fill(codes[0])
    second.get_by_role("button", name="Verify").click()
    expect(second.get_by_role("status")).to_contain_text("That code did not work.")
    expect(second).to_have_url(re.compile(r"/signin$"))


def times_shown(page: Page, text: str) -> int:
    """How many elements show ``text`` on screen (a visually hidden one is heard, not seen)."""
    count: int = page.evaluate(
        """(text) => [...document.querySelectorAll("main p")].filter(
            (p) => p.textContent === text && p.getBoundingClientRect().width > 1
        ).length""",
        text,
    )
    return count


def test_a_wrong_code_is_said_once_at_the_field_and_announced(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    turn_on(accounts, email)
    page, _ = browsers.open()
    enter_password(page, email)

    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Verify").click()

    said = "That code did not work. Try the current one, or sign in again."
    expect(page.locator(".field-error")).to_have_text(said)
    expect(page.get_by_role("status")).to_have_text(said)  # read out by screen readers
    assert times_shown(page, said) == 1


def test_a_wrong_code_is_the_answer_and_no_session_is_refreshed_for_it(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    turn_on(accounts, email)
    page, watch = browsers.open()
    enter_password(page, email)
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))

    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Verify").click()

    expect(page.get_by_role("status")).to_contain_text("That code did not work.")
    assert [url.split("/api/", 1)[1] for url in sent if "/api/" in url] == ["auth/mfa/verify"]
    watch.failed_loads.clear()  # the 401 of the wrong code


def test_a_sign_in_out_of_codes_starts_again_and_says_why(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    app, _ = turn_on(accounts, email)
    page, watch = browsers.open()
    enter_password(page, email)
    for _ in range(5):
        page.get_by_label("Code").fill("000000")
        page.get_by_role("button", name="Verify").click()
        expect(page.get_by_role("status")).to_contain_text("That code did not work.")
        expect(page.locator("form[aria-busy]")).to_have_count(0)  # answered: ready for the next

    page.get_by_label("Code").fill(app.now())  # the right code, but the 6th
    page.get_by_role("button", name="Verify").click()

    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    expect(page.get_by_text("That sign-in has ended: it allows 5 codes")).to_be_visible()
    expect(page.get_by_label("Email")).to_be_focused()
    watch.failed_loads.clear()  # the 401s of the codes
