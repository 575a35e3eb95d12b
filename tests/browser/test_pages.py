"""Every page in Chromium: signing up and in, the security headers and CSP, cookies,
CSRF, the keyboard alone, phone widths and dark mode."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from engage_http.openapi import DOCS_CSP
from support.browser import PASSWORD, Accounts, Browsers, Watch, sign_in

CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"


def test_every_page_has_the_security_headers_and_no_csp_violation(
    browsers: Browsers, accounts: Accounts
) -> None:
    page, watch = browsers.open()
    email = accounts.create()
    for path in ("/signin", "/signup"):
        response = page.goto(path)
        assert response is not None
        headers = response.headers
        assert headers["content-security-policy"] == CSP
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    sign_in(page, email)
    for path in ("/", "/account"):
        response = page.goto(path)
        assert response is not None
        assert response.headers["content-security-policy"] == CSP
        expect(page.locator("h1")).to_be_visible()
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator(".list-status")).not_to_be_empty()
    # Nothing on any page broke the policy, nor logged any error at all.
    assert watch.errors == []
    assert watch.failed_loads == []


def test_a_csp_violation_would_be_caught(browsers: Browsers) -> None:
    """The watch itself works: an inline script is refused and reported."""
    page, watch = browsers.open()
    page.goto("/signin")
    expect(page.locator("h1")).to_have_text("Sign in")
    with page.expect_console_message(lambda message: "CSP violation" in message.text):
        page.evaluate(
            """() => {
            const script = document.createElement("script");
            script.textContent = "window.ran = true";
            document.body.append(script);
        }"""
        )
    assert page.evaluate("window.ran") is None
    assert any("CSP violation: script-src-elem inline" in error for error in watch.errors)
    watch.errors.clear()  # expected here


def test_sign_up_then_sign_in_reaches_the_dashboard(browsers: Browsers, accounts: Accounts) -> None:
    page, _ = browsers.open()
    email = accounts.new_email()
    page.goto("/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()
    page.get_by_role("link", name="Account").click()
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page).to_have_url(re.compile(r"/signin$"))
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    sign_in(page, email)
    expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()


def test_a_wrong_password_says_so_next_to_the_field(browsers: Browsers, accounts: Accounts) -> None:
    page, watch = browsers.open()
    email = accounts.create()
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    password = page.get_by_label("Password")
    expect(password).to_have_attribute("aria-invalid", "true")
    # The message is next to the field and is the field's accessible description.
    expect(page.locator(".field-error:visible")).to_have_text(
        "The email or the password is not correct."
    )
    expect(password).to_have_accessible_description("The email or the password is not correct.")
    expect(page.get_by_role("status")).to_have_text("The email or the password is not correct.")
    expect(password).to_be_focused()
    assert any("401" in line for line in watch.failed_loads)


def test_a_taken_email_and_invalid_fields_show_their_messages(
    browsers: Browsers, accounts: Accounts
) -> None:
    page, _ = browsers.open()
    email = accounts.create()
    page.goto("/signup")
    page.get_by_label("Email").fill(email.upper())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    field_error = (
        page.locator(".field").filter(has=page.get_by_label("Email")).locator(".field-error")
    )
    expect(field_error).to_contain_text("already has an account")

    page.get_by_label("Email").fill("not an address")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    errors = page.locator(".field-error:visible")
    expect(errors).to_have_count(2)
    expect(errors.nth(0)).to_contain_text("Email is not a valid address")
    expect(errors.nth(1)).to_have_text("Password must be 8 to 256 characters long")
    expect(page.get_by_role("status")).to_have_text("Please correct the marked fields.")
    expect(page.get_by_label("Email")).to_be_focused()


def test_too_many_failures_say_when_to_try_again(browsers: Browsers, accounts: Accounts) -> None:
    page, _ = browsers.open()
    email = accounts.create()
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    status = page.get_by_role("status")
    for _ in range(6):  # the per-email limit is 5 failures in 15 minutes
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_enabled()
        if "Too many" in (status.text_content() or ""):
            break
    expect(status).to_contain_text(re.compile(r"Too many attempts\. Try again in \d+ minutes"))
    expect(status).to_contain_text(re.compile(r"\(at .+\)"))


def test_the_keyboard_alone_signs_in(browsers: Browsers, accounts: Accounts) -> None:
    page, _ = browsers.open()
    email = accounts.create()
    page.goto("/signin")
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_focused()
    # On to the account page by the keyboard too.
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("link", name="Account")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Account", level=1)).to_be_focused()


def test_the_page_script_cannot_read_the_session_cookies(
    browsers: Browsers, accounts: Accounts
) -> None:
    page, _ = browsers.open()
    sign_in(page, accounts.create())
    readable = page.evaluate("document.cookie")
    assert "csrftoken=" in readable
    assert "engage_access" not in readable
    assert "engage_refresh" not in readable
    jar = {cookie["name"]: cookie for cookie in page.context.cookies()}
    assert jar["engage_access"]["httpOnly"] is True
    assert jar["csrftoken"]["httpOnly"] is False


def test_a_state_change_without_the_csrf_header_is_refused(
    browsers: Browsers, accounts: Accounts
) -> None:
    page, watch = browsers.open()
    sign_in(page, accounts.create())
    post = """async (withToken) => {
        const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
        const headers = {"Content-Type": "application/json"};
        if (withToken) headers["X-CSRFToken"] = token;
        const response = await fetch("/api/dashboard/metrics", {
            method: "POST", headers, body: JSON.stringify({metric_type: "x", metric_value: 1}),
        });
        return [response.status, (await response.json()).detail];
    }"""
    assert page.evaluate(post, False) == [403, "CSRF token verification failed"]
    assert page.evaluate(post, True)[0] == 201
    assert any("403" in line for line in watch.failed_loads)


def test_every_page_fits_a_phone_and_follows_the_dark_scheme(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    accounts.record(email, [{"metric_type": "page_view", "metric_value": 1}])
    page, _ = browsers.open(viewport={"width": 375, "height": 740}, color_scheme="dark")
    page.goto("/signup")
    page.goto("/signin")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    sign_in(page, email)
    expect(page.locator(".chart-bar")).to_have_count(1)
    for path in ("/", "/account"):
        page.goto(path)
        expect(page.locator("h1")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(n) for n in re.findall(r"\d+", background)[:3])
    assert red + green + blue < 120, background


def test_an_unknown_page_path_says_so_with_a_404_and_links_home(browsers: Browsers) -> None:
    page, watch = browsers.open()
    response = page.goto("/no-such-page")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("heading", name="Page not found", level=1)).to_be_visible()
    expect(page.get_by_text("There is no page at /no-such-page.")).to_be_visible()

    page.get_by_role("link", name="Go to the dashboard").click()

    expect(page).to_have_url(re.compile(r"/signin$"))  # signed out: the dashboard asks first
    watch.failed_loads.clear()  # the page's own 404


def test_the_api_docs_page_runs_under_its_csp(browsers: Browsers) -> None:
    page, watch = browsers.open()

    response = page.goto("/schema")

    assert response is not None
    assert response.headers["content-security-policy"] == DOCS_CSP
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    operations.first.click()  # its parameters and answers open
    expect(page.locator(".opblock-body").first).to_be_visible()
    assert watch.errors == []
    assert watch.failed_loads == []


def test_long_words_and_code_never_widen_a_phone_page(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()  # no metrics: the dashboard shows its commands to get some
    auth = accounts.bearer(email)
    unbroken = "x" * 90
    key = {"name": unbroken, "scopes": ["metrics:write"]}
    assert accounts.http.post("/api/keys", json=key, headers=auth).status_code == 201
    login = {"email": email, "password": PASSWORD}
    headers = {"User-Agent": unbroken}
    assert accounts.http.post("/api/auth/token", json=login, headers=headers).status_code == 200
    page, _ = browsers.open(viewport={"width": 375, "height": 740})
    sign_in(page, email)
    expect(page.locator(".empty-state pre").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "/"
    for path, shown in (("/api-keys", unbroken), ("/sessions", unbroken)):
        page.goto(path)
        expect(page.locator(".device").filter(has_text=shown).first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, path


def test_a_page_that_cannot_load_says_so_where_it_is_seen(
    browsers: Browsers, accounts: Accounts
) -> None:
    page, watch = browsers.open()
    sign_in(page, accounts.create())
    problem = '{"type": "about:blank", "title": "Service unavailable", "status": 503,'
    problem += ' "detail": "the database is unreachable; try again shortly"}'
    page.route(
        "**/api/auth/me",
        lambda route: route.fulfill(
            status=503,
            headers={"Content-Type": "application/problem+json", "Retry-After": "2"},
            body=problem,
        ),
    )

    page.goto("/account")

    alert = page.get_by_role("alert").filter(has_text="This page could not load")
    expect(alert).to_be_visible()
    top = alert.evaluate("node => node.getBoundingClientRect().top")
    assert 0 <= top < page.evaluate("innerHeight") / 2  # under the heading, not below the fold
    watch.failed_loads.clear()  # the 503s were the point


def test_a_first_visit_is_asked_to_sign_in_not_told_a_session_ended(browsers: Browsers) -> None:
    page, watch = browsers.open()

    page.goto("/account")

    expect(page).to_have_url(re.compile(r"/signin$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("Your session has ended")).to_have_count(0)
    watch.failed_loads.clear()  # the 401 that sent it here


_NO_ANSWER = "Failed to load resource: net::"


def _unreached(watch: Watch) -> None:
    """Forget the console lines of the requests a test made fail on purpose."""
    watch.errors[:] = [line for line in watch.errors if not line.startswith(_NO_ANSWER)]
    watch.failed_loads.clear()


def test_a_page_whose_api_is_out_of_reach_says_so(browsers: Browsers, accounts: Accounts) -> None:
    page, watch = browsers.open()
    sign_in(page, accounts.create())
    page.context.route("**/api/**", lambda route: route.abort())

    page.get_by_role("link", name="Account").click()
    page.get_by_role("link", name="See each device's session and end one").click()

    alert = page.get_by_role("alert")
    expect(alert).to_have_text("This page could not load: Cannot reach engage. Try again")
    _unreached(watch)


def test_a_page_whose_module_does_not_come_says_so_and_loads_on_trying_again(
    browsers: Browsers, accounts: Accounts
) -> None:
    page, watch = browsers.open()
    sign_in(page, accounts.create())
    page.context.route("**/js/pages/account.js", lambda route: route.abort())

    page.get_by_role("link", name="Account").click()

    expect(page.get_by_role("heading", name="Account", level=1)).to_be_focused()
    expect(page.get_by_role("alert")).to_contain_text("Cannot reach engage")
    page.context.unroute("**/js/pages/account.js")
    page.get_by_role("link", name="Try again").click()
    expect(page.get_by_role("heading", name="Profile")).to_be_visible()
    _unreached(watch)


def test_sign_up_whose_sign_in_is_refused_says_the_account_is_made(
    browsers: Browsers, accounts: Accounts
) -> None:
    """Signing in right after sign-up may be refused (ENGAGE_REQUIRE_VERIFIED_EMAIL's
    403 here): the account exists all the same, and the form must not be sent again."""
    page, watch = browsers.open()
    problem = '{"type": "urn:engage-suite:problem:email-not-verified", "status": 403,'
    problem += (
        ' "title": "Email address not verified", "detail": "verify your email address first"}'
    )
    page.route(
        "**/api/auth/login",
        lambda route: route.fulfill(
            status=403, headers={"Content-Type": "application/problem+json"}, body=problem
        ),
    )
    email = accounts.new_email()
    page.goto("/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()

    expect(page).to_have_url(re.compile(r"/signin$"))
    expect(page.get_by_role("status").first).to_have_text(
        f"Your account is created. Open the link we mailed to {email} to verify the address,"
        " then sign in."
    )
    assert accounts.can_log_in(email)
    watch.failed_loads.clear()  # the refused sign-in


def test_a_page_that_cannot_load_leaves_no_loading_line(
    browsers: Browsers, accounts: Accounts
) -> None:
    page, watch = browsers.open()
    sign_in(page, accounts.create())
    answer = '{"type": "about:blank", "title": "Internal Server Error", "status": 500}'
    page.context.route(
        "**/api/**",
        lambda route: route.fulfill(
            status=500, headers={"Content-Type": "application/problem+json"}, body=answer
        ),
    )

    for path in ("/sessions", "/activity", "/api-keys", "/second-factor"):
        page.goto(path)
        expect(page.get_by_role("alert")).to_contain_text("This page could not load", timeout=5000)
        # Nothing more is coming: no line may still say it is.
        expect(page.get_by_text("Loading…").filter(visible=True)).to_have_count(0)
    watch.failed_loads.clear()  # the 500s were the point


def test_the_narrowest_phone_fits_a_dashboard_of_large_values(
    browsers: Browsers, accounts: Accounts
) -> None:
    email = accounts.create()
    accounts.record(email, [{"metric_type": "page_view", "metric_value": 123456789012345.5}])
    page, _ = browsers.open(viewport={"width": 320, "height": 640})
    sign_in(page, email)
    expect(page.locator(".chart-bar")).to_have_count(1)
    # The header's links, the totals and the record form's date and time all fit.
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
