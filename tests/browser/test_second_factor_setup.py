"""The second-factor page in Chromium: set up through the page with a code computed
here from the key it shows, the recovery codes copied and downloaded, then signing in
with a code and with a recovery code (once); new codes, and turning it off."""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
from playwright.sync_api import Page, expect

from support.browser import PASSWORD, Accounts, Browsers, earlier_code, sign_in


def open_second_factor(page: Page) -> None:
    page.get_by_role("link", name="Account", exact=True).click()
    page.get_by_role("link", name="Set up or change the second factor").click()
    expect(page.get_by_role("heading", name="Second factor", level=1)).to_be_visible()


def log_out(page: Page) -> None:
    page.get_by_role("link", name="Account", exact=True).click()
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page.get_by_text("You are logged out.")).to_be_visible()


def sign_in_with_code(page: Page, email: str, code: str) -> None:
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Verify").click()


def password_alone_signs_in(accounts: Accounts, email: str) -> bool:
    token = accounts.http.post("/api/auth/token", json={"email": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return "access_token" in token.json()


def test_set_up_through_the_page_then_sign_in_with_a_code_or_a_recovery_code_once(
    browsers: Browsers, accounts: Accounts, tmp_path: Path
) -> None:
    email = accounts.create()
    page, _ = browsers.open()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, email)
    open_second_factor(page)
    expect(page.get_by_text("Off: the password alone signs you in.")).to_be_visible()

    page.get_by_role("button", name="Set up").click()
    qr = page.get_by_role("img", name="QR code of the set-up link")
    expect(qr).to_be_visible()
    assert qr.locator("path").count() >= 1
    expect(page.get_by_role("heading", name="Set up an authenticator app")).to_be_focused()
    app = pyotp.TOTP(page.locator(".totp-secret").inner_text().replace(" ", ""))

    code = page.get_by_label("Code", exact=True)
    code.fill("000000")
    page.get_by_role("button", name="Turn on").click()
    wrong = page.locator(".field-error").filter(has_text="The code is not the current one")
    expect(wrong).to_be_visible()
    expect(code).to_be_focused()
    code.fill(earlier_code(app))
    page.get_by_role("button", name="Turn on").click()

    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_focused()
    expect(page.get_by_text("The second factor is on.")).to_be_visible()
    codes = page.locator(".recovery-codes code").all_inner_texts()
    assert len(set(codes)) == 10, codes
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("The codes are copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "\n".join(codes)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download").click()
    assert download.value.suggested_filename == "engage-recovery-codes.txt"
    saved = tmp_path / "codes.txt"
    download.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0] == f"engage recovery codes for {email}"
    assert lines[-10:] == codes
    page.get_by_role("button", name="Done").click()
    expect(page.get_by_text(re.compile(r"^On: .* 10 recovery codes are left\.$"))).to_be_visible()
    expect(page.get_by_role("button", name="Turn off")).to_be_visible()
    assert not password_alone_signs_in(accounts, email)

    log_out(page)
    sign_in_with_code(page, email, app.now())
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()

    log_out(page)
    sign_in_with_code(page, email, codes[0])
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    open_second_factor(page)
    expect(page.get_by_text(re.compile(r"9 recovery codes are left\.$"))).to_be_visible()

    log_out(page)
    sign_in_with_code(page, email, codes[0])
    expect(page.get_by_role("status")).to_contain_text("That code did not work.")
    expect(page).to_have_url(re.compile(r"/signin$"))


def test_new_recovery_codes_and_turning_it_off_need_the_password_and_a_code(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    page, _ = browsers.open(viewport={"width": 375, "height": 740})
    sign_in(page, email)
    auth = accounts.bearer(email)
    started = accounts.http.post("/api/auth/mfa/totp", headers=auth)
    app = pyotp.TOTP(started.json()["secret"])
    turned_on = accounts.http.post(
        "/api/auth/mfa/totp/confirm", json={"code": earlier_code(app)}, headers=auth
    )
    old = turned_on.json()["recovery_codes"]

    open_second_factor(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    renew = page.locator("section").filter(
        has=page.get_by_role("heading", name="New recovery codes")
    )
    renew.get_by_label("Password").fill("not my password")
    renew.get_by_label("Code").fill(app.now())
    renew.get_by_role("button", name="Make new recovery codes").click()
    expect(renew.get_by_role("status")).to_have_text("The password or the code is not correct.")
    renew.get_by_label("Password").fill(PASSWORD)
    renew.get_by_role("button", name="Make new recovery codes").click()
    expect(
        page.get_by_text("New recovery codes are ready; the old ones no longer work.")
    ).to_be_visible()
    new = page.locator(".recovery-codes code").all_inner_texts()
    assert len(set(new)) == 10, new
    assert not set(new) & set(old)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_role("button", name="Done").click()

    off = page.locator("section").filter(has=page.get_by_role("heading", name="Turn off"))
    off.get_by_label("Password").fill(PASSWORD)
    off.get_by_label("Code").fill(old[0])
    off.get_by_role("button", name="Turn off").click()
    expect(off.get_by_role("status")).to_have_text("The password or the code is not correct.")
    off.get_by_label("Code").fill(new[0])
    off.get_by_role("button", name="Turn off").click()
    expect(page.get_by_text("The second factor is off.")).to_be_focused()
    expect(page.get_by_text("Off: the password alone signs you in.")).to_be_visible()
    expect(page.get_by_role("button", name="Set up")).to_be_visible()
    assert password_alone_signs_in(accounts, email)


def as_the_app_shows_it(code: str) -> str:
    """Authenticator apps show a code as two groups of three digits."""
    return f"{code[:3]} {code[3:]}"


def test_a_code_typed_as_the_app_shows_it_with_a_space_is_accepted(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    page, _ = browsers.open()
    sign_in(page, email)
    open_second_factor(page)
    page.get_by_role("button", name="Set up").click()
    app = pyotp.TOTP(page.locator(".totp-secret").inner_text().replace(" ", ""))

    page.get_by_label("Code", exact=True).fill(as_the_app_shows_it(earlier_code(app)))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_focused()
    page.get_by_role("button", name="Done").click()

    log_out(page)
    sign_in_with_code(page, email, as_the_app_shows_it(app.now()))
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
