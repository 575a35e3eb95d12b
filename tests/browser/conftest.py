"""The web app in real Chromium, against a real `engage serve` (one per test module).

Playwright for Python drives the system's Chromium (Debian's ``chromium``)
through ``executable_path``: Playwright's own browser download needs a network
these machines do not have. Without a Chromium the tests skip, except under
``CI=true``, where they fail. ``ENGAGE_TEST_CHROMIUM`` names another binary.

Every page a test opens is watched (``support.browser.Watch``): an uncaught
exception, a console error or a Content-Security-Policy violation fails the
test at teardown. Console errors of expected HTTP answers ("Failed to load
resource: ... 401") are kept apart, for the tests that look for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from support.browser import CHROMIUM_ARGS, Accounts, Browsers, chromium
from support.serve import running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Browser]:
    """Chromium for one test module. Playwright's sync API keeps an event loop
    running while it is open, so it starts after the asyncio-run fixtures
    (hence ``server`` first) and stops before the next module's tests."""
    executable = chromium()
    if executable is None:
        message = "no Chromium found (apt-get install chromium): the browser tests need one"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)  # a loaded 2-core machine, not a slow page
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`engage serve` on this module's database; its base URL."""
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": "browser-suite secret, at least 32 bytes long",
        "ENGAGE_DATA_DIR": str(tmp_path_factory.mktemp("serve")),
        "ENGAGE_BCRYPT_ROUNDS": "4",
        # Every test signs in many times from 127.0.0.1.
        "ENGAGE_AUTH_RATE_PER_MINUTE": "100000",
    }
    with running_server(env, workers=1) as (_, base):
        yield base


@pytest.fixture
def browsers(browser: Browser, server: str) -> Iterator[Browsers]:
    """Opens watched browser contexts; fails the test if any page logged an error."""
    opened = Browsers(browser, server)
    yield opened
    errors = opened.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def accounts(server: str) -> Iterator[Accounts]:
    made = Accounts(server)
    yield made
    made.http.close()
