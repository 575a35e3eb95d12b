"""Helpers for the browser tests (tests/browser): watched contexts, users, signing in."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import pyotp
    from playwright.sync_api import Browser, BrowserContext, Page

PASSWORD = "correct horse battery staple"
# A closed network: nothing but the server under test is reached.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
_FAILED_LOAD = "Failed to load resource: the server responded with a status of"
# Reported to the console by the page itself, where Playwright sees it.
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
});
"""


def chromium() -> str | None:
    """The system's Chromium (ENGAGE_TEST_CHROMIUM, else chromium on PATH), if any."""
    candidates = [
        os.environ.get("ENGAGE_TEST_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


class Watch:
    """What went wrong on the pages of one browser context."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.failed_loads: list[str] = []

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        text = message.text
        (self.failed_loads if text.startswith(_FAILED_LOAD) else self.errors).append(text)


class Browsers:
    """Opens browser contexts (each its own cookie jar, like another device)."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.opened: list[tuple[BrowserContext, Watch]] = []

    def open(self, **options: Any) -> tuple[Page, Watch]:
        """A new context's first page, watched; options as for ``new_context``."""
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = self.browser.new_context(base_url=self.base_url, **options)
        context.add_init_script(_REPORT_CSP_VIOLATIONS)
        watch = Watch()
        context.on("page", watch.attach)
        self.opened.append((context, watch))
        return context.new_page(), watch

    def close(self) -> list[str]:
        errors = [error for _, watch in self.opened for error in watch.errors]
        for context, _ in self.opened:
            context.close()
        return errors


class Accounts:
    """Users made through the API, for tests about something else."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def new_email(self) -> str:
        return f"user-{uuid.uuid4().hex[:12]}@example.com"

    def create(self, email: str | None = None, password: str = PASSWORD) -> str:
        email = email or self.new_email()
        response = self.http.post("/api/auth/signup", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        return email

    def bearer(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        response = self.http.post("/api/auth/token", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def record(self, email: str, items: list[dict[str, Any]]) -> None:
        response = self.http.post(
            "/api/dashboard/metrics/batch", json={"items": items}, headers=self.bearer(email)
        )
        assert response.status_code == 201, response.text

    def can_log_in(self, email: str, password: str = PASSWORD) -> bool:
        response = self.http.post("/api/auth/token", json={"email": email, "password": password})
        return response.status_code == 200


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Sign in through the form and wait for the dashboard's data."""
    from playwright.sync_api import expect

    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.locator(".list-status")).not_to_be_empty()


# How long a code of the step before now must still have: the server takes it (one
# step of skew) only until the current step ends, and a busy machine's browser
# may take seconds to send it.
CODE_SLACK = 10.0


def earlier_code(app: pyotp.TOTP) -> str:
    """The previous step's code, as an authenticator shows it: accepted, and it
    leaves now()'s step unused. Taken with at least ``CODE_SLACK`` seconds of its
    validity left (else after the next step has begun)."""
    left = 30 - time.time() % 30
    if left < CODE_SLACK:
        time.sleep(left + 0.05)
    return app.generate_otp(int(time.time()) // 30 - 1)
