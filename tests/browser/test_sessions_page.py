"""The sessions page in Chromium: two browser contexts are two devices of one person;
one ends the other's session, whose next request is refused."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from support.browser import Accounts, Browsers, sign_in

PHONE = "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0"


def devices_of(page: Page) -> Locator:
    return page.get_by_role("list", name="Signed-in devices").get_by_role("listitem")


def open_sessions(page: Page) -> None:
    page.get_by_role("link", name="Account").click()
    page.get_by_role("link", name="See each device's session and end one").click()
    expect(page.get_by_role("heading", name="Sessions", level=1)).to_be_visible()


def test_ending_the_other_browsers_session_signs_it_out_there(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    laptop, _ = browsers.open(timezone_id="Asia/Tokyo")
    phone, phone_watch = browsers.open(viewport={"width": 375, "height": 740}, user_agent=PHONE)
    sign_in(laptop, email)
    sign_in(phone, email)

    open_sessions(laptop)
    devices = devices_of(laptop)
    expect(devices).to_have_count(2)
    here = devices.filter(has_text="This device")
    expect(here.get_by_role("heading")).to_have_text("Chrome on Linux This device")
    expect(here.get_by_role("button")).to_have_text("Log out here")
    there = devices.filter(has_text="Firefox on Android")
    expect(there).to_contain_text("127.0.0.1")
    expect(there).to_contain_text(PHONE)
    # Times in the browser's zone: Tokyo is UTC+9 all year.
    seen = there.locator("time").last
    assert seen.get_attribute("datetime"), "the moment itself, for assistive technology"
    expect(seen).not_to_be_empty()

    there.get_by_role("button", name="End session").click()
    expect(laptop.get_by_role("status")).to_have_text(
        "Session ended: Firefox on Android is signed out."
    )
    expect(devices).to_have_count(1)
    expect(laptop.get_by_text("1 session is signed in.")).to_be_focused()

    phone.get_by_role("link", name="Account").click()
    expect(phone).to_have_url(re.compile(r"/signin$"))
    expect(phone.get_by_text("Your session has ended. Sign in again to continue.")).to_be_visible()
    assert any("401" in line for line in phone_watch.failed_loads)

    laptop.reload()
    expect(devices).to_have_count(1)


def test_log_out_here_ends_this_session_and_fits_a_phone(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    laptop, _ = browsers.open()
    phone, _ = browsers.open(viewport={"width": 375, "height": 740}, user_agent=PHONE)
    sign_in(laptop, email)
    sign_in(phone, email)

    open_sessions(phone)
    expect(devices_of(phone)).to_have_count(2)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    here = devices_of(phone).filter(has_text="This device")
    expect(here).to_contain_text("Firefox on Android")
    here.get_by_role("button", name="Log out here").click()
    expect(phone).to_have_url(re.compile(r"/signin$"))
    expect(phone.get_by_text("You are logged out.")).to_be_visible()

    open_sessions(laptop)
    expect(devices_of(laptop)).to_have_count(1)
