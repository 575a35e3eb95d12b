"""The activity page in Chromium: the sign-ins and second-factor events in words,
newest first, with their address and device, and "Load more" to the first entry."""

from __future__ import annotations

import time

import pyotp
from playwright.sync_api import Page, expect

from support.browser import Accounts, Browsers, sign_in

TOKEN_LOGINS = 21


def open_activity(page: Page) -> None:
    page.get_by_role("link", name="Account", exact=True).click()
    page.get_by_role("link", name="Recent sign-ins and account changes").click()
    expect(page.get_by_role("heading", name="Activity", level=1)).to_be_visible()


def test_the_activity_lists_sign_ins_and_the_second_factor_a_page_at_a_time(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    for _ in range(TOKEN_LOGINS):
        accounts.bearer(email)
    page, _ = browsers.open(viewport={"width": 375, "height": 740})
    sign_in(page, email)
    auth = accounts.bearer(email)
    started = accounts.http.post("/api/auth/mfa/totp", headers=auth)
    app = pyotp.TOTP(started.json()["secret"])
    code = app.generate_otp(int(time.time()) // 30)
    confirmed = accounts.http.post("/api/auth/mfa/totp/confirm", json={"code": code}, headers=auth)
    assert confirmed.status_code == 200, confirmed.text
    refused = accounts.http.post("/api/auth/token", json={"email": email, "password": "wrong!!!"})
    assert refused.status_code == 401, refused.text

    open_activity(page)
    entries = page.get_by_role("list", name="Sign-ins and account changes").get_by_role("listitem")
    expect(entries).to_have_count(20)
    expect(entries.nth(0)).to_contain_text("Failed sign-in")
    expect(entries.nth(1)).to_contain_text("Second factor turned on")
    expect(entries.nth(2)).to_contain_text("Signed in")
    expect(entries.nth(3)).to_contain_text("Signed in")
    expect(entries.nth(3)).to_contain_text("127.0.0.1 · Chrome on Linux")
    assert entries.nth(0).locator("time").get_attribute("datetime")
    expect(page.get_by_text("The latest 20 entries.")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    page.get_by_role("button", name="Load more").click()
    # Sign-up, every login (the tokens, this browser, the set-up's), the factor, the failure.
    expect(entries).to_have_count(1 + TOKEN_LOGINS + 2 + 2)
    expect(entries.last).to_contain_text("Account created")
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()
    expect(page.get_by_text(f"All {1 + TOKEN_LOGINS + 4} entries.")).to_be_focused()
