"""The email pages in Chromium, with the links read from the outbox directory that
`engage serve` writes to when no mail server is set: verification (the dashboard's
banner, sending the link again), a forgotten password, a new address."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import expect

from support.browser import PASSWORD, Accounts, Browsers, sign_in
from support.mail import read_outbox, text_of
from support.serve import running_server

NEW_PASSWORD = "a brand new passphrase"
_LINK = re.compile(r"https?://\S+#token=[A-Za-z0-9_-]+")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def server(pg_url: str, data_dir: Path) -> Iterator[str]:
    """`engage serve` with its outbox in ``data_dir`` (no SMTP), links to itself."""
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": "browser-suite secret, at least 32 bytes long",
        "ENGAGE_DATA_DIR": str(data_dir),
        "ENGAGE_BCRYPT_ROUNDS": "4",
        "ENGAGE_AUTH_RATE_PER_MINUTE": "100000",
    }
    with running_server(env, workers=1) as (_, base):
        yield base


def mails_to(data_dir: Path, address: str, count: int) -> list[EmailMessage]:
    """The first ``count`` mails to ``address``, once written (within 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        found = [m for m in read_outbox(data_dir / "outbox") if str(m["To"]) == address]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)} of {count} mails to {address}"
            return found
        time.sleep(0.05)


def link_in(message: EmailMessage, server: str) -> str:
    """The message's link: on the server under test."""
    match = _LINK.search(text_of(message))
    assert match, text_of(message)
    assert match[0].startswith(f"{server}/")  # engage serve's own origin by default
    return match[0]


def test_the_banner_sends_the_link_again_and_the_link_verifies(
    browsers: Browsers, accounts: Accounts, data_dir: Path, server: str
) -> None:
    email = accounts.create()
    page, _ = browsers.open()
    sign_in(page, email)
    banner = page.locator(".verify-banner")
    expect(banner).to_be_visible()
    banner.get_by_role("button", name="Send the link again").click()
    expect(banner.get_by_role("status")).to_have_text(f"A new link is on its way to {email}.")

    _, again = mails_to(data_dir, email, 2)
    page.goto(link_in(again, server))
    expect(page.get_by_role("status")).to_have_text("Your email address is verified. Thank you!")
    expect(page).to_have_url(re.compile(r"/verify-email$"))  # the token left the address bar
    page.goto("/")
    expect(page.locator(".list-status")).not_to_be_empty()
    expect(banner).to_be_hidden()

    page.goto(link_in(again, server))  # a link works once
    expect(page.get_by_role("status")).to_contain_text("This link does not work")


def test_a_forgotten_password_is_reset_from_the_mailed_link(
    browsers: Browsers, accounts: Accounts, data_dir: Path, server: str
) -> None:
    email = accounts.create()
    page, _ = browsers.open()
    page.goto("/signin")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Mail me a reset link").click()
    expect(page.get_by_role("status")).to_have_text(
        f"If an account uses {email}, a reset link is on its way there."
    )

    _, reset = mails_to(data_dir, email, 2)
    page.goto(link_in(reset, server))
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password").fill("short")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_text("New password must be 8 to 256 characters long")).to_be_visible()
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    expect(page).to_have_url(re.compile(r"/signin$"))
    expect(
        page.get_by_text("Your password is changed and every session has ended.")
    ).to_be_visible()
    sign_in(page, email, NEW_PASSWORD)
    assert not accounts.can_log_in(email, PASSWORD)


def test_a_new_address_takes_over_once_its_link_is_opened(
    browsers: Browsers, accounts: Accounts, data_dir: Path, server: str
) -> None:
    email = accounts.create()
    new_email = accounts.new_email()
    page, _ = browsers.open()
    sign_in(page, email)
    page.get_by_role("link", name="Account").click()
    page.get_by_role("link", name="Change email address").click()
    expect(page.get_by_role("heading", name="Change email address")).to_be_visible()
    page.get_by_label("New email").fill(new_email)
    page.get_by_label("Password").fill("not my password")
    page.get_by_role("button", name="Send a confirmation link").click()
    expect(
        page.locator(".field-error").filter(has_text="The password is not correct.")
    ).to_be_visible()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Send a confirmation link").click()
    expect(page.get_by_role("status").filter(has_text="A confirmation link")).to_be_visible()

    [confirm] = mails_to(data_dir, new_email, 1)
    page.goto(link_in(confirm, server))
    expect(page.get_by_role("status")).to_have_text(
        "Your account has its new email address. Sign in with it from now on."
    )
    page.get_by_role("link", name="Go to the account").click()
    expect(page.locator("dd").filter(has_text=new_email)).to_be_visible()
    assert accounts.can_log_in(new_email)


def test_a_reset_link_still_works_after_its_page_is_reloaded(
    browsers: Browsers, accounts: Accounts, data_dir: Path, server: str
) -> None:
    email = accounts.create()
    assert accounts.http.post("/api/auth/password/forgot", json={"email": email}).status_code == 202
    _, reset = mails_to(data_dir, email, 2)
    page, _ = browsers.open()
    page.goto(link_in(reset, server))
    expect(page).to_have_url(re.compile(r"/reset-password$"))  # the token left the address bar

    page.reload()
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()

    expect(page).to_have_url(re.compile(r"/signin$"))
    assert accounts.can_log_in(email, NEW_PASSWORD)
