"""Against a real `engage serve`: `schemathesis run --checks all` finds nothing, and
the docs page at /schema renders in Chromium with every other origin cut off.

Every check schemathesis has, over every operation of the OpenAPI document, from
its examples, its coverage cases and generated ones, bearer-authenticated as a
signed-up user; support/schemathesis_hooks.py supplies what a document cannot
say (a session per case, unique idempotency keys, server-issued cursors, since
before until, recorded_at within its window). Bounded: a fixed seed, 25
examples per operation and one worker, about a minute.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from support.browser import CHROMIUM_ARGS, chromium
from support.serve import running_server

TESTS = Path(__file__).parents[1]
EMAIL = "schemathesis@example.com"


@pytest.fixture(scope="module")
def server(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": "schemathesis-suite secret, at least 32 bytes",
        "ENGAGE_DATA_DIR": str(tmp_path_factory.mktemp("serve")),
        "ENGAGE_BCRYPT_ROUNDS": "4",
        # Thousands of requests from one address, many with wrong passwords: the
        # limits would answer 429 (documented, but it would hide everything else).
        "ENGAGE_AUTH_RATE_PER_MINUTE": "1000000",
        "ENGAGE_LOGIN_FAILURES_PER_EMAIL": "1000",
        "ENGAGE_MAIL_RATE_PER_HOUR": "1000000",
        # running_server reads the server's output only at the end: thousands of
        # access-log lines would fill the pipe and stall the server.
        "ENGAGE_LOG_LEVEL": "WARNING",
    }
    with running_server(env, workers=1) as (_, base):
        yield base


# A login challenge comes only from an account with a second factor, which the test
# account has not: every verify is a 401 by design, no sign of credentials gone wrong.
CONFIG = """
[[operations]]
include-path = "/api/auth/mfa/verify"
warnings = [
  "missing_test_data", "validation_mismatch", "unsupported_regex", "method_not_allowed",
  "rate_limited",
]
"""


def test_schemathesis_finds_nothing(server: str, tmp_path: Path) -> None:
    password = secrets.token_urlsafe(16)
    signed_up = httpx.post(
        f"{server}/api/auth/signup", json={"email": EMAIL, "password": password}, timeout=30
    )
    assert signed_up.status_code == 201, signed_up.text
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)

    run = subprocess.run(
        [
            *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"),
            f"{server}/schema/openapi.json",
            *("--checks", "all"),
            *("--max-examples", "25"),
            *("--seed", "1"),
            *("--workers", "1"),
            *("--request-timeout", "30"),
            # A stream never ends, so no request-and-response check fits it; its
            # parameters and refusals are tested in tests/serve/test_live_stream.py.
            *("--exclude-path", "/api/dashboard/stream"),
            "--no-color",
        ],
        env={
            **os.environ,
            "PYTHONPATH": str(TESTS),
            "SCHEMATHESIS_HOOKS": "support.schemathesis_hooks",
            "ENGAGE_ST_URL": server,
            "ENGAGE_ST_EMAIL": EMAIL,
            "ENGAGE_ST_PASSWORD": password,
        },
        cwd=tmp_path,  # schemathesis keeps its example database here
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert run.returncode == 0, run.stdout[-30_000:] + run.stderr[-5_000:]
    assert "No issues found" in run.stdout, run.stdout[-5_000:]


def test_the_docs_page_lists_the_operations_with_no_network(server: str) -> None:
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    from playwright.sync_api import Route, expect, sync_playwright

    ours = urlsplit(server).netloc
    elsewhere: list[str] = []
    errors: list[str] = []

    def only_engage(route: Route) -> None:
        if urlsplit(route.request.url).netloc == ours:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(base_url=server)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.route("**/*", only_engage)
            response = page.goto("/schema")
            assert response is not None
            assert response.status == 200
            summary = page.locator(".opblock-summary-path", has_text="/api/dashboard/summary")
            expect(summary).to_be_visible(timeout=20_000)
            assert page.locator(".opblock").count() >= 15  # the contract's operations
            page.locator(".opblock-summary", has_text="/api/auth/signup").click()
            expect(page.get_by_text("application/problem+json").first).to_be_visible()
        finally:
            browser.close()
    assert elsewhere == []
    assert errors == []
