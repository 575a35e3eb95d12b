"""The account page in Chromium: the password, logging out here and everywhere, deletion.
Two browser contexts are two devices of the same person."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from support.browser import PASSWORD, Accounts, Browsers, sign_in

NEW_PASSWORD = "a brand new passphrase"


def open_account(page: Page) -> None:
    page.get_by_role("link", name="Account").click()
    expect(page.get_by_role("heading", name="Account", level=1)).to_be_visible()


def expect_signed_out(page: Page) -> None:
    """The page, used again, finds its session gone and goes to sign-in."""
    page.reload()
    expect(page).to_have_url(re.compile(r"/signin$"))
    expect(page.get_by_text("Your session has ended. Sign in again to continue.")).to_be_visible()


def test_changing_the_password_ends_the_other_browsers_session(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    laptop, _ = browsers.open()
    phone, phone_watch = browsers.open(viewport={"width": 375, "height": 740})
    sign_in(laptop, email)
    sign_in(phone, email)

    open_account(laptop)
    form = laptop.locator("form").filter(has=laptop.get_by_role("button", name="Change password"))
    form.get_by_label("Current password").fill("not my password")
    form.get_by_label("New password").fill(NEW_PASSWORD)
    form.get_by_role("button", name="Change password").click()
    expect(form.get_by_role("status")).to_have_text("The current password is not correct.")
    expect(form.get_by_label("Current password")).to_be_focused()

    form.get_by_label("Current password").fill(PASSWORD)
    form.get_by_label("New password").fill(NEW_PASSWORD)
    form.get_by_role("button", name="Change password").click()
    expect(form.get_by_role("status")).to_have_text(
        "Password changed. Your other sessions have ended."
    )

    expect_signed_out(phone)
    assert any("401" in line for line in phone_watch.failed_loads)
    # This browser stays signed in; the new password is the one that works.
    laptop.get_by_role("link", name="Dashboard").click()
    expect(laptop.get_by_text(f"Signed in as {email}")).to_be_visible()
    assert not accounts.can_log_in(email, PASSWORD)
    sign_in(phone, email, NEW_PASSWORD)


def test_log_out_everywhere_ends_every_session(browsers: Browsers, accounts: Accounts) -> None:
    email = accounts.create()
    laptop, _ = browsers.open()
    phone, _ = browsers.open()
    sign_in(laptop, email)
    sign_in(phone, email)
    open_account(laptop)
    laptop.get_by_role("button", name="Log out everywhere").click()
    expect(laptop).to_have_url(re.compile(r"/signin$"))
    expect(laptop.get_by_text("You are logged out everywhere.")).to_be_visible()
    expect_signed_out(phone)
    laptop.goto("/account")
    expect(laptop).to_have_url(re.compile(r"/signin$"))


def test_log_out_here_leaves_the_other_browser_signed_in(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    laptop, _ = browsers.open()
    phone, _ = browsers.open()
    sign_in(laptop, email)
    sign_in(phone, email)
    open_account(laptop)
    laptop.get_by_role("button", name="Log out", exact=True).click()
    expect(laptop.get_by_text("You are logged out.")).to_be_visible()
    assert not [c for c in laptop.context.cookies() if c["name"] == "engage_access"]
    phone.reload()
    expect(phone.get_by_text(f"Signed in as {email}")).to_be_visible()


def test_deleting_the_account_asks_for_the_password_and_removes_it(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    accounts.record(email, [{"metric_type": "page_view", "metric_value": 1}])
    page, _ = browsers.open()
    sign_in(page, email)
    open_account(page)
    expect(page.get_by_text(email)).to_be_visible()
    danger = page.locator("section").filter(has=page.get_by_role("heading", name="Delete account"))
    password = danger.get_by_label("Password", exact=True)
    delete = danger.get_by_role("button", name="Delete my account and all its metrics")

    delete.click()
    expect(password).to_have_attribute("aria-invalid", "true")
    password.fill("not my password")
    delete.click()
    expect(danger.get_by_role("status")).to_have_text("The password is not correct.")
    assert accounts.can_log_in(email)

    password.fill(PASSWORD)
    delete.click()
    expect(page).to_have_url(re.compile(r"/signin$"))
    expect(page.get_by_text("Your account and all its metrics are deleted.")).to_be_visible()
    assert not accounts.can_log_in(email)
    # Signing up again with the same email works: nothing of the old account is left.
    accounts.create(email)
    sign_in(page, email)
    expect(page.get_by_role("heading", name="Nothing recorded in the last 30 days")).to_be_visible()
