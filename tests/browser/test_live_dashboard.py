"""In Chromium: the dashboard shows metrics recorded elsewhere as they come (the live
stream, no reload, no polling), and the API keys page creates, shows once and revokes
keys that then record metrics from outside the browser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from playwright.sync_api import expect

from support.browser import Accounts, Browsers, sign_in


def test_metrics_recorded_elsewhere_appear_on_the_dashboard_without_a_reload(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    page, _ = browsers.open()
    sign_in(page, email)
    rows = page.locator(".metrics-table tbody tr")
    expect(rows).to_have_count(0)
    loads: list[str] = []
    page.on("request", lambda r: loads.append(r.url) if "/api/dashboard/metrics" in r.url else None)

    # Another device records, through the API.
    now = datetime.now(UTC) - timedelta(minutes=1)
    accounts.record(
        email,
        [{"metric_type": "steps", "metric_value": 7, "recorded_at": now.isoformat()}],
    )

    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("steps")
    expect(page.locator(".list-status")).to_have_text("All 1 shown.")  # not "No metrics"
    expect(page.locator(".chart-bar")).to_have_count(1)  # the summary followed
    accounts.record(email, [{"metric_type": "steps", "metric_value": 5}])
    expect(rows).to_have_count(2)
    expect(page.locator(".list-status")).to_have_text("All 2 shown.")
    expect(page.locator(".chart-bar").last).to_have_attribute("data-count", "2")
    assert loads == []  # pushed, not polled: the list was never fetched again


def test_an_api_key_is_made_shown_once_used_and_revoked(
    browsers: Browsers, accounts: Accounts, server: str
) -> None:
    email = accounts.create()
    page, _ = browsers.open()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, email)
    page.get_by_role("link", name="Account").first.click()
    page.get_by_role("link", name="API keys for devices and scripts").click()
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()
    expect(page.get_by_text("No API keys yet.")).to_be_visible()

    page.get_by_label("Name").fill("kitchen sensor")
    page.get_by_role("button", name="Create key").click()

    expect(page.get_by_role("heading", name="Your new key: kitchen sensor")).to_be_visible()
    key = page.locator(".new-key .secret").inner_text()
    assert key.startswith("engk_")
    expect(page.locator(".new-key pre")).to_contain_text(f"Bearer {key}")
    page.get_by_role("button", name="Copy the key").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    expect(page.locator(".key-list li")).to_have_count(1)
    expect(page.locator(".key-list li")).to_contain_text("Record metrics")
    assert key not in page.locator(".key-list").inner_text()  # the list never shows it

    bearer = {"Authorization": f"Bearer {key}"}
    metric = {"metric_type": "temperature", "metric_value": 21.5}
    recorded = httpx.post(f"{server}/api/dashboard/metrics", json=metric, headers=bearer)
    assert recorded.status_code == 201

    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("Key revoked: kitchen sensor no longer works.")).to_be_visible()
    expect(page.get_by_text("No API keys yet.")).to_be_visible()
    refused = httpx.post(f"{server}/api/dashboard/metrics", json=metric, headers=bearer)
    assert refused.status_code == 401
    page.reload()
    expect(page.locator(".key-list li")).to_have_count(0)
