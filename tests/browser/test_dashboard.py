"""The dashboard in Chromium: recording, the list and its pages, the chart's buckets and
time zones, the tooltip, and how few API calls its first render makes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, Request, expect

from support.browser import Accounts, Browsers, sign_in


def api_calls(page: Page) -> list[str]:
    """The API requests the page makes from now on (method and path)."""
    seen: list[str] = []

    def note(request: Request) -> None:
        if request.resource_type == "eventsource":
            return  # the live stream, opened once and left open: not a call of the render
        path = request.url.split("//", 1)[1].split("/", 1)[1].split("?", 1)[0]
        if path.startswith("api/"):
            seen.append(f"{request.method} /{path}")

    page.on("request", note)
    return seen


def test_a_recorded_metric_shows_in_the_list_and_the_chart(
    browsers: Browsers, accounts: Accounts
) -> None:
    page, _ = browsers.open()
    sign_in(page, accounts.create())
    expect(page.get_by_role("heading", name="Nothing recorded in the last 30 days")).to_be_visible()
    expect(page.get_by_text("engage metrics backfill metrics.csv")).to_be_visible()
    expect(page.locator(".stats")).to_be_hidden()  # no totals of nothing (five dashes)

    form = page.locator("form").filter(has=page.get_by_role("button", name="Record"))
    form.get_by_label("Metric type").fill("page_view")
    form.get_by_label("Value").fill("3.5")
    form.get_by_role("button", name="Record").click()
    expect(form.get_by_role("status")).to_contain_text("Recorded page_view = 3.5")

    rows = page.locator(".metrics-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("page_view")
    expect(rows.first).to_contain_text("3.5")
    bars = page.locator(".chart-bar")
    expect(bars).to_have_count(1)
    expect(bars.first).to_have_attribute("data-count", "1")
    page.get_by_label("Show").select_option("sum")
    expect(bars.first).to_have_attribute("data-value", "3.5")
    expect(page.locator(".stat").filter(has_text="Sum")).to_contain_text("3.5")
    # The type is offered in the filter now, and the tooltip reads the bar.
    expect(page.get_by_label("Metric type").first.locator("option")).to_have_text(
        ["All types", "page_view"]
    )
    page.locator(".chart-svg").focus()
    tooltip = page.locator(".chart-tooltip")
    expect(tooltip).to_be_visible()
    expect(tooltip).to_contain_text("count1")


def test_a_bad_metric_is_refused_next_to_its_field(browsers: Browsers, accounts: Accounts) -> None:
    page, watch = browsers.open()
    sign_in(page, accounts.create())
    form = page.locator("form").filter(has=page.get_by_role("button", name="Record"))
    form.get_by_label("Metric type").fill("no spaces allowed")
    form.get_by_label("Value").fill("1")
    form.get_by_role("button", name="Record").click()
    expect(form.locator(".field-error:visible")).to_have_count(1)
    expect(form.get_by_label("Metric type")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("Metric type")).to_be_focused()
    assert any("422" in line for line in watch.failed_loads)


def test_load_more_pages_through_the_list_newest_first(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    now = datetime.now(UTC).replace(microsecond=0)
    accounts.record(
        email,
        [
            {
                "metric_type": "click",
                "metric_value": n,
                "recorded_at": (now - timedelta(minutes=n)).isoformat(),
            }
            for n in range(60)
        ],
    )
    page, _ = browsers.open()
    sign_in(page, email)
    rows = page.locator(".metrics-table tbody tr")
    expect(rows).to_have_count(25)
    more = page.get_by_role("button", name="Load more")
    more.click()
    expect(rows).to_have_count(50)
    more.click()
    expect(rows).to_have_count(60)
    expect(more).to_be_hidden()
    expect(page.locator(".list-status")).to_have_text("All 60 shown.")
    values = [row.locator("td").nth(2).inner_text() for row in rows.all()]
    assert values == [str(n) for n in range(60)]  # newest first: n minutes ago


def test_the_bucket_and_the_time_zone_change_the_chart(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    # 22:30 and 23:30 UTC one day, 01:30 UTC the next: two days in UTC, one in Tokyo.
    day = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    moments = [day + timedelta(hours=hours) for hours in (22.5, 23.5, 25.5)]
    accounts.record(
        email,
        [
            {"metric_type": "visit", "metric_value": 1, "recorded_at": f"{m:%FT%T}Z"}
            for m in moments
        ],
    )

    utc, _ = browsers.open(timezone_id="UTC")
    sign_in(utc, email)
    expect(utc.get_by_text("Times are in UTC.")).to_be_visible()
    utc.get_by_role("radio", name="7 d").check()
    bars = utc.locator(".chart-bar")
    expect(bars).to_have_count(2)
    assert [bar.get_attribute("data-count") for bar in bars.all()] == ["2", "1"]
    utc.get_by_label("Bucket").select_option("hour")
    expect(bars).to_have_count(3)
    utc.get_by_label("Bucket").select_option("week")
    expect(bars).to_have_count(len({(m - timedelta(days=m.weekday())).date() for m in moments}))

    tokyo, _ = browsers.open(timezone_id="Asia/Tokyo")
    sign_in(tokyo, email)
    expect(tokyo.get_by_text("Times are in Asia/Tokyo.")).to_be_visible()
    tokyo.get_by_role("radio", name="7 d").check()
    bars = tokyo.locator(".chart-bar")
    expect(bars).to_have_count(1)
    expect(bars.first).to_have_attribute("data-count", "3")
    # The bar starts at midnight in Tokyo: 15:00 UTC the day before.
    start = datetime.fromisoformat(bars.first.get_attribute("data-start") or "")
    assert start == day + timedelta(hours=15)
    # The tooltip names the bar's day in local time: the day after, in Tokyo.
    tokyo.locator(".chart-svg").focus()
    local = day + timedelta(days=1)
    expect(tokyo.locator(".chart-tooltip")).to_contain_text(f"{local:%b} {local.day}, {local.year}")


def test_the_first_render_after_sign_in_makes_at_most_three_api_calls(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    accounts.record(email, [{"metric_type": "page_view", "metric_value": 1}])
    page, _ = browsers.open()
    page.goto("/signin")
    calls = api_calls(page)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".chart-bar")).to_have_count(1)
    expect(page.locator(".metrics-table tbody tr")).to_have_count(1)
    after_login = calls[calls.index("POST /api/auth/login") + 1 :]
    assert len(after_login) <= 3, after_login
    # Opened afresh (who is signed in is not known yet): still three at most.
    calls.clear()
    page.reload()
    expect(page.locator(".chart-bar")).to_have_count(1)
    expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()
    assert len(calls) <= 3, calls


def test_an_expired_access_token_is_refreshed_once_and_the_request_retried(
    browsers: Browsers, accounts: Accounts
) -> None:
    page, watch = browsers.open()
    sign_in(page, accounts.create())
    calls = api_calls(page)
    page.context.clear_cookies(name="engage_access")  # as when it expires
    form = page.locator("form").filter(has=page.get_by_role("button", name="Record"))
    form.get_by_label("Metric type").fill("page_view")
    form.get_by_label("Value").fill("1")
    form.get_by_role("button", name="Record").click()
    expect(form.get_by_role("status")).to_contain_text("Recorded page_view")
    assert calls[:3] == [
        "POST /api/dashboard/metrics",
        "POST /api/auth/refresh",
        "POST /api/dashboard/metrics",
    ]
    assert calls.count("POST /api/auth/refresh") == 1
    expect(page.locator(".metrics-table tbody tr")).to_have_count(1)

    # Without a refresh cookie either, the page goes to sign-in.
    page.context.clear_cookies(name=re.compile("^engage_"))
    page.get_by_role("radio", name="7 d").click()  # not check(): the page leaves at once
    expect(page).to_have_url(re.compile(r"/signin$"))
    expect(page.get_by_text("Your session has ended. Sign in again to continue.")).to_be_visible()
    assert any("401" in line for line in watch.failed_loads)


def test_a_tap_on_a_bar_shows_that_bars_numbers(browsers: Browsers, accounts: Accounts) -> None:
    email = accounts.create()
    now = datetime.now(UTC)
    accounts.record(
        email,
        [
            {
                "metric_type": "steps",
                "metric_value": 1,
                "recorded_at": (now - timedelta(days=d)).isoformat(),
            }
            for d in (1, 10, 20)
        ],
    )
    page, _ = browsers.open(viewport={"width": 375, "height": 740}, has_touch=True, is_mobile=True)
    sign_in(page, email)
    bars = page.locator(".chart-bar")
    expect(bars).to_have_count(3)
    page.locator(".chart-svg").scroll_into_view_if_needed()
    for index in (0, 2, 1):  # a finger sends no pointer move: the tap alone must choose
        box = bars.nth(index).bounding_box()
        assert box is not None
        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        expect(bars.nth(index)).to_have_class(re.compile(r"\bis-active\b"))


def test_a_button_pressed_from_the_keyboard_keeps_the_focus(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    start = datetime.now(UTC) - timedelta(hours=2)
    accounts.record(
        email,
        [
            {
                "metric_type": "steps",
                "metric_value": n,
                "recorded_at": (start + timedelta(seconds=n)).isoformat(),
            }
            for n in range(60)
        ],
    )
    page, _ = browsers.open()
    sign_in(page, email)
    more = page.get_by_role("button", name="Load more")
    expect(page.locator(".metrics-table tbody tr")).to_have_count(25)
    more.focus()
    page.keyboard.press("Enter")
    # Disabled while it loads, it loses the focus: it gets it back, not the page's body.
    expect(page.locator(".metrics-table tbody tr")).to_have_count(50)
    assert page.evaluate("document.activeElement.textContent") == "Load more"
    record = page.get_by_role("button", name="Record")
    page.locator("form").filter(has=record).get_by_label("Metric type").fill("steps")
    page.locator("form").filter(has=record).get_by_label("Value").fill("1")
    record.focus()
    page.keyboard.press("Enter")
    expect(page.locator("form").filter(has=record).get_by_role("status")).to_contain_text(
        "Recorded"
    )
    assert page.evaluate("document.activeElement.textContent") == "Record"


def test_a_tiny_value_is_shown_as_recorded_not_rounded_to_zero(
    browsers: Browsers, accounts: Accounts
) -> None:
    page, _ = browsers.open(locale="en-US")
    sign_in(page, accounts.create())
    form = page.locator("form").filter(has=page.get_by_role("button", name="Record"))
    form.get_by_label("Metric type").fill("dose")
    form.get_by_label("Value").fill("1e-7")
    form.get_by_role("button", name="Record").click()

    expect(form.get_by_role("status")).to_contain_text("Recorded dose = 0.0000001 at")
    expect(page.locator(".metrics-table tbody td.number")).to_have_text(["0.0000001"])


def test_load_more_that_works_after_a_failure_clears_its_message(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    accounts.record(email, [{"metric_type": "tap", "metric_value": n} for n in range(30)])
    page, watch = browsers.open()
    sign_in(page, email)
    more = page.get_by_role("button", name="Load more")
    page.route("**/api/dashboard/metrics?*cursor=*", lambda route: route.fulfill(status=503))
    more.click()
    alert = page.get_by_role("alert").filter(has_text="Could not load")
    expect(alert).to_be_visible()

    page.unroute("**/api/dashboard/metrics?*cursor=*")
    more.click()

    expect(page.locator(".list-status")).to_have_text("All 30 shown.")
    expect(alert).to_be_hidden()  # the page says nothing failed that did not
    watch.failed_loads.clear()  # the 503 was the point
