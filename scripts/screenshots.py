"""Screenshots of every page of the web app, at desktop and phone widths.

Runs a real `engage serve` on its own embedded PostgreSQL in a temporary data
directory, fills a demo account with `engage demo`, and drives the system's
Chromium (Playwright, ``executable_path``) through the pages, writing PNGs:

    python scripts/screenshots.py [--out docs/screenshots]   # or: nox -s screenshots

It needs Chromium (`apt-get install chromium`, or ENGAGE_TEST_CHROMIUM) and
reaches nothing but the server it starts on loopback.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support.browser import CHROMIUM_ARGS, chromium  # noqa: E402

EMAIL = "demo@example.com"
PASSWORD = "demo password 2026"
NEWCOMER = "new@example.com"
# Fixed, so that the pictures do not depend on the machine that takes them.
TIME_ZONE = "Europe/Berlin"
LOCALE = "en-GB"
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 375, "height": 812}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit("screenshots: engage serve did not start")


@contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    """`engage serve` with one worker until the block ends; its base URL."""
    port = free_port()
    log = Path(env["ENGAGE_DATA_DIR"]) / "serve.log"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "engage_cli", "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process)
        yield base
    except BaseException:
        sys.stderr.write(log.read_text(errors="replace")[-4000:])  # what the server said
        raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".list-status")).not_to_be_empty()


def shoot(page: Page, out: Path, name: str, *, keep_focus: bool = False) -> None:
    if not keep_focus:
        page.evaluate("document.activeElement?.blur()")
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def pages(base: str, out: Path, executable: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        for label, viewport in WIDTHS.items():
            context = browser.new_context(
                base_url=base, viewport=viewport, timezone_id=TIME_ZONE, locale=LOCALE
            )
            page = context.new_page()

            page.goto("/signin")
            expect(page.get_by_label("Email")).to_be_focused()
            shoot(page, out, f"signin-{label}")

            page.goto("/signup")
            page.get_by_label("Email").fill("ada@example")
            page.get_by_label("Password").fill("short")
            page.get_by_role("button", name="Create account").click()
            expect(page.locator(".field-error:visible")).to_have_count(2)
            shoot(page, out, f"signup-errors-{label}")

            sign_in(page, NEWCOMER, PASSWORD)
            shoot(page, out, f"dashboard-empty-{label}")
            context.clear_cookies()

            sign_in(page, EMAIL, PASSWORD)
            caption = page.locator(".stats-caption")
            page.get_by_role("radio", name="12 months").check()
            expect(caption).to_have_text("All types, the last 12 months")
            page.get_by_label("Metric type").first.select_option("page_view")
            page.get_by_label("Show").select_option("sum")
            expect(caption).to_have_text("page_view, the last 12 months")
            expect(page.locator(".chart-bar").first).to_be_visible()
            page.locator(".chart-svg").focus()
            page.keyboard.press("ArrowLeft")
            expect(page.locator(".chart-tooltip")).to_be_visible()
            shoot(page, out, f"dashboard-{label}", keep_focus=True)  # the tooltip shows

            page.get_by_role("link", name="Account").click()
            expect(page.get_by_text(EMAIL)).to_be_visible()
            expect(page.get_by_text("Off", exact=True)).to_be_visible()  # the second factor
            shoot(page, out, f"account-{label}")

            page.get_by_role("link", name="See each device's session and end one").click()
            expect(page.get_by_text("This device")).to_be_visible()
            shoot(page, out, f"sessions-{label}")

            page.goto("/second-factor")
            page.get_by_role("button", name="Set up").click()  # not on until confirmed
            expect(page.get_by_role("img", name="QR code of the set-up link")).to_be_visible()
            shoot(page, out, f"second-factor-{label}")

            page.goto("/activity")
            expect(page.locator(".log-entry").first).to_be_visible()
            shoot(page, out, f"activity-{label}")
            context.close()

        dark = browser.new_context(
            base_url=base,
            viewport=WIDTHS["desktop"],
            timezone_id=TIME_ZONE,
            locale=LOCALE,
            color_scheme="dark",
        )
        page = dark.new_page()
        sign_in(page, EMAIL, PASSWORD)
        page.get_by_role("radio", name="7 d").check()
        page.get_by_label("Bucket").select_option("hour")
        expect(page.get_by_role("heading", name="Count per hour")).to_be_visible()
        expect(page.locator(".chart-bar").first).to_be_visible()
        shoot(page, out, "dashboard-dark-desktop")
        dark.close()
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    executable = chromium()
    if executable is None:
        raise SystemExit("screenshots: no Chromium found (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="engage-screenshots-") as data_dir:
        env = {
            **os.environ,
            "ENGAGE_DATA_DIR": data_dir,
            "ENGAGE_JWT_SECRET": "screenshots only: a secret of at least 32 bytes",
            "ENGAGE_BCRYPT_ROUNDS": "4",
            "TZ": TIME_ZONE,  # engage demo's daily rhythm follows the operator's zone
        }
        env.pop("ENGAGE_DATABASE_URL", None)
        with serving(env) as base:
            subprocess.run(
                [sys.executable, "-m", "engage_cli", "demo", "--password-stdin", "--seed", "2026"],
                input=PASSWORD + "\n",
                env=env,
                check=True,
                text=True,
                stdout=subprocess.DEVNULL,
            )
            created = httpx.post(
                f"{base}/api/auth/signup", json={"email": NEWCOMER, "password": PASSWORD}
            )
            created.raise_for_status()
            pages(base, args.out, executable)


if __name__ == "__main__":
    main()
