"""The web app's files as the server sends them: headers, compression, caching, ENGAGE_WEB."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient

from engage_adapters.bootstrap import HttpPolicy, Storage, build_services
from engage_adapters.settings import Settings, SettingsError, load_settings
from engage_http.app import create_app
from engage_http.webapp import (
    ASSETS,
    PAGE_PATHS,
    SECURITY_HEADERS,
    WEB_ROOT,
    accepts_gzip,
    bundle,
)
from support.asgi import post_through_asgi

CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
Client = AsyncTestClient[Litestar]
Problem = Callable[..., dict[str, Any]]


@pytest.fixture
def storage() -> Storage:
    return "memory"


def revalidated_unless_it_sets_a_cookie(response: httpx.Response) -> str:
    """no-cache; a first visit's answer sets the csrftoken cookie, so it is no-store."""
    return "no-store" if "set-cookie" in response.headers else "no-cache"


def asset_urls(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/assets/[^"]+)"', page)


@pytest.mark.parametrize("path", PAGE_PATHS)
async def test_every_page_path_is_the_app_with_its_security_headers(
    client: Client, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["cache-control"] == revalidated_unless_it_sets_a_cookie(response)
    again = await client.get(path)  # the browser holds its csrftoken cookie now
    assert again.headers["cache-control"] == "no-cache"
    assert "csrftoken" in client.cookies  # the script reads it for X-CSRFToken
    assert asset_urls(response.text), "the page loads its scripts and styles from /assets"


async def test_head_on_a_page_or_an_asset_has_the_get_headers_and_no_body(
    client: Client,
) -> None:
    page = await client.get("/")
    script = next(url for url in asset_urls(page.text) if url.endswith("/main.js"))
    for url in ("/", "/signin", script):
        got = await client.get(url)
        head = await client.head(url)
        assert head.status_code == 200, url
        assert head.content == b""
        for name in ("content-type", "content-length", "etag", "cache-control"):
            assert head.headers[name] == got.headers[name], (url, name)
        assert head.headers["content-security-policy"] == CSP


async def test_the_page_is_revalidated_by_its_etag(client: Client) -> None:
    first = await client.get("/")
    again = await client.get("/", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]


async def test_assets_are_gzipped_and_kept_for_good_under_their_version(client: Client) -> None:
    page = (await client.get("/")).text
    script = next(url for url in asset_urls(page) if url.endswith("/main.js"))
    response = await client.get(script, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.content == (WEB_ROOT / "js" / "main.js").read_bytes()  # httpx un-gzips
    plain = await client.get(script, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.headers["etag"] != response.headers["etag"]


@pytest.mark.parametrize(
    "accept_encoding",
    ["", "identity", "gzip;q=0", "identity, gzip;q=0", "GZIP; Q=0.000", "*;q=0", "br, *;q=0"],
)
async def test_an_asset_is_sent_as_it_is_to_a_client_that_refuses_gzip(
    client: Client, accept_encoding: str
) -> None:
    url = f"{ASSETS}/{bundle().version}/app.css"
    response = await client.get(url, headers={"Accept-Encoding": accept_encoding})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == (WEB_ROOT / "app.css").read_bytes()


async def test_if_none_match_star_revalidates_any_file_there_is(
    client: Client, expect_problem: Problem
) -> None:
    """RFC 9110, 13.1.2: ``*`` matches any current representation."""
    for url in ("/", f"{ASSETS}/{bundle().version}/js/main.js"):
        response = await client.get(url, headers={"If-None-Match": "*"})
        assert response.status_code == 304, url
        assert response.content == b""
    missing = f"{ASSETS}/{bundle().version}/js/missing.js"
    expect_problem(await client.get(missing, headers={"If-None-Match": "*"}), 404)


async def test_if_none_match_over_several_header_lines_is_one_list(client: Client) -> None:
    """RFC 9110, 5.3: a list header's lines mean what one comma-separated line does."""
    url = f"{ASSETS}/{bundle().version}/js/main.js"
    etag = (await client.get(url, headers={"Accept-Encoding": "identity"})).headers["etag"]
    for second in (etag, "*"):
        lines = [(b"if-none-match", b'"x"'), (b"if-none-match", second.encode())]
        sent = post_through_asgi(client, url, [], lines, method="GET")
        start = next(m for m in sent if m["type"] == "http.response.start")
        assert start["status"] == 304, second


async def test_options_on_an_asset_names_its_methods_and_a_missing_one_is_404(
    client: Client, expect_problem: Problem
) -> None:
    version = bundle().version
    there = await client.options(f"{ASSETS}/{version}/app.css")
    assert there.status_code == 204
    assert there.headers.get_list("allow") == ["GET, HEAD, OPTIONS"]
    expect_problem(await client.options(f"{ASSETS}/{version}/nonexistent.css"), 404)
    page = await client.options("/signin")
    assert page.headers.get_list("allow") == ["GET, HEAD, OPTIONS"]
    refused = await client.put(f"{ASSETS}/{version}/app.css")
    assert refused.status_code == 405
    assert refused.headers.get_list("allow") == ["GET, HEAD, OPTIONS"]


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate, br, zstd", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("*", True),
        ("x-gzip", True),
        ("GZIP;Q=0.001", True),
        ("identity;q=0.5, gzip", True),
        ("", False),
        ("identity", False),
        ("br", False),
        ("gzip;q=0", False),
        ("gzip;q=0.0", False),
        ("identity, gzip;q=0", False),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # gzip named: its own weight, not *'s
        ("gzip;q=0.5, identity", False),  # identity preferred
        ("*;q=0.9, gzip;q=0.1", False),  # * weighs identity too: preferred
        ("gzip;q=0.5, *", False),
        ("gzip;q=2", False),  # not a weight: refused, the file is sent as it is
        ("gzip;q=", False),
        ("gzip;q=high", False),
    ],
)
def test_accept_encoding_weights_decide_gzip(accept_encoding: str, gzipped: bool) -> None:
    assert accepts_gzip(accept_encoding) is gzipped


_CODINGS = st.sampled_from(["br", "deflate", "zstd", "compress", "identity", "*", "x-gzip"])
_WEIGHTS = st.sampled_from(["", ";q=0", ";q=0.5", ";q=1", ";q=1.000", ";Q=0.25"])
_OTHERS = st.lists(st.tuples(_CODINGS, _WEIGHTS), max_size=5)


def _header(entries: list[tuple[str, str]]) -> str:
    return ", ".join(coding + weight for coding, weight in entries)


@given(before=_OTHERS, after=_OTHERS, zero=st.sampled_from(["q=0", "q=0.0", "Q=0.000"]))
def test_gzip_weighed_zero_is_never_sent(
    before: list[tuple[str, str]], after: list[tuple[str, str]], zero: str
) -> None:
    """Whatever else the header lists, before it or after (RFC 9110, 12.5.3: q=0 is "not
    acceptable")."""
    header = ", ".join(filter(None, [_header(before), f"gzip;{zero}", _header(after)]))
    assert not accepts_gzip(header)


@given(others=_OTHERS, spaced=st.booleans(), upper=st.booleans())
def test_gzip_named_first_without_identity_is_sent(
    others: list[tuple[str, str]], spaced: bool, upper: bool
) -> None:
    """Spaces and letter case aside; identity, if named (or ``*``, which weighs it
    too), could be preferred."""
    rest = [entry for entry in others if entry[0] not in ("identity", "*")]
    header = _header([("gzip", ";q=0.5"), *rest])
    if spaced:
        header = header.replace(",", " ,  ").replace(";", " ; ")
    assert accepts_gzip(header.upper() if upper else header)


async def test_an_asset_of_another_version_is_sent_but_not_kept(client: Client) -> None:
    response = await client.get(f"{ASSETS}/0123456789ab/app.css")
    assert response.status_code == 200
    assert response.headers["cache-control"] == revalidated_unless_it_sets_a_cookie(response)


async def test_an_unknown_asset_is_a_404_problem(client: Client, expect_problem: Problem) -> None:
    version = bundle().version
    expect_problem(await client.get(f"{ASSETS}/{version}/js/missing.js"), 404)
    expect_problem(await client.get(f"{ASSETS}/{version}/../webapp.py"), 404)


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_a_browser_visit_to_no_page_gets_the_app_with_a_404(client: Client) -> None:
    response = await client.get("/no-such-page", headers={"Accept": BROWSER_ACCEPT})

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert response.content == bundle().index.plain  # its router says "Page not found"
    assert response.headers["content-security-policy"] == CSP
    assert set(re.split(r",\s*", response.headers["vary"])) >= {"Accept", "Accept-Encoding"}
    head = await client.head("/no-such-page", headers={"Accept": BROWSER_ACCEPT})
    assert (head.status_code, head.content) == (404, b"")


@pytest.mark.parametrize(
    ("method", "path", "accept"),
    [
        ("GET", "/no-such-page", "application/json"),  # an API client
        ("GET", "/no-such-page", "*/*"),
        ("GET", "/api/no-such-thing", BROWSER_ACCEPT),  # an API path, even in a browser
        ("GET", f"{ASSETS}/v/js/missing.js", BROWSER_ACCEPT),
        ("GET", "/schema/no-such-file", BROWSER_ACCEPT),
        ("POST", "/no-such-page", BROWSER_ACCEPT),  # no visit: a form sent to nowhere
    ],
)
async def test_anything_else_that_is_not_there_is_the_404_problem(
    client: Client, expect_problem: Problem, method: str, path: str, accept: str
) -> None:
    response = await client.request(method, path, headers={"Accept": accept})
    assert response.status_code in (404, 405)
    expect_problem(response, response.status_code)


async def test_engage_web_false_serves_the_api_alone(
    settings: Settings, policy: HttpPolicy, expect_problem: Problem
) -> None:
    app = create_app(
        lambda: build_services(settings, storage="memory"), attrs.evolve(policy, web=False)
    )
    async with AsyncTestClient(app) as client:
        expect_problem(await client.get("/", headers={"Accept": BROWSER_ACCEPT}), 404)
        expect_problem(await client.get(f"{ASSETS}/{bundle().version}/app.css"), 404)
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(("raw", "web"), [("false", False), ("0", False), ("true", True)])
def test_the_web_setting_is_a_boolean(raw: str, web: bool) -> None:
    assert load_settings({"ENGAGE_WEB": raw}).web is web
    assert load_settings({}).web is True


def test_a_bad_web_setting_is_reported_with_the_others() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"ENGAGE_WEB": "maybe", "ENGAGE_BCRYPT_ROUNDS": "1"})
    assert "ENGAGE_WEB must be true or false" in raised.value.faults
    assert len(raised.value.faults) == 2


def test_the_router_and_the_server_know_the_same_pages() -> None:
    routes = (WEB_ROOT / "js" / "routes.js").read_text()
    assert tuple(re.findall(r'path: "([^"]+)"', routes)) == PAGE_PATHS


def test_each_page_weighs_under_100_kb_of_scripts_and_styles() -> None:
    """What a page can load: every script and style but the other pages' own modules
    (the router imports a page's module only when it is shown)."""
    sizes = {
        name: len(file.plain)
        for name, file in bundle().assets.items()
        if name.endswith((".js", ".css"))
    }
    pages = {name: size for name, size in sizes.items() if "/pages/" in f"/{name}"}
    shared = sum(sizes.values()) - sum(pages.values())
    assert pages, sizes
    heaviest = max(pages, key=pages.__getitem__)
    assert shared + pages[heaviest] < 100_000, (heaviest, shared, pages[heaviest])


_HTML_FROM_STRINGS = r"(inner|outer)HTML|insertAdjacentHTML|document\.write"


def test_no_inline_script_or_style_and_no_html_from_strings() -> None:
    page = (WEB_ROOT / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline script"
    assert "<style" not in page
    for path in WEB_ROOT.rglob("*"):
        if path.suffix in (".html", ".js"):
            text = path.read_text()
            assert not re.search(r"\sstyle=|setAttribute\(\s*\"style\"", text), path
            assert not re.search(_HTML_FROM_STRINGS, text), path
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), path
            assert "https://" not in text, path


def test_security_headers_are_the_contract_ones() -> None:
    assert SECURITY_HEADERS["Content-Security-Policy"] == CSP
