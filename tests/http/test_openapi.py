"""The OpenAPI document tells the truth, and the docs page at /schema needs no network.

The document's facts are checked here one by one; tests/http/test_openapi_schemathesis.py
holds them all against a running server with schemathesis.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from litestar import Litestar, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, PathParameter

from engage_adapters.bootstrap import HttpPolicy
from engage_http.dependencies import Providers, dependencies
from engage_http.openapi import SWAGGER_UI, ParameterProblems

POLICY = HttpPolicy(
    cookie_secure=False, cors_origins=(), auth_rate_per_minute=1, csrf_secret="s" * 32
)
PROBLEM = {"$ref": "#/components/schemas/Problem"}
METRICS = "/api/dashboard/metrics"
SUMMARY = "/api/dashboard/summary"

# Every status each operation can answer, success first.
STATUSES = {
    ("post", "/api/auth/signup"): {201, 400, 403, 409, 413, 415, 422, 429, 503},
    ("post", "/api/auth/login"): {200, 400, 401, 403, 413, 415, 422, 429, 503},
    ("post", "/api/auth/token"): {200, 400, 401, 403, 413, 415, 422, 429, 503},
    ("post", "/api/auth/refresh"): {200, 401, 403, 413, 415, 429, 503},
    ("post", "/api/auth/logout"): {204, 400, 401, 403, 413, 415, 503},
    ("get", "/api/auth/me"): {200, 401, 503},
    ("post", "/api/auth/password"): {204, 400, 401, 403, 413, 415, 422, 429, 503},
    ("delete", "/api/auth/me"): {204, 400, 401, 403, 413, 415, 422, 429, 503},
    ("post", "/api/auth/verify/request"): {202, 401, 403, 413, 415, 429, 503},
    ("post", "/api/auth/verify"): {204, 400, 403, 413, 415, 422, 503},
    ("post", "/api/auth/password/forgot"): {202, 400, 403, 413, 415, 422, 429, 503},
    ("post", "/api/auth/password/reset"): {204, 400, 403, 413, 415, 422, 429, 503},
    ("post", "/api/auth/email"): {202, 400, 401, 403, 409, 413, 415, 422, 429, 503},
    ("post", "/api/auth/email/confirm"): {204, 400, 403, 409, 413, 415, 422, 503},
    ("get", METRICS): {200, 400, 401, 403, 429, 503},
    ("post", METRICS): {201, 400, 401, 403, 409, 413, 415, 422, 429, 503},
    ("post", f"{METRICS}/batch"): {201, 400, 401, 403, 409, 413, 415, 422, 429, 503},
    ("get", SUMMARY): {200, 400, 401, 403, 429, 503},
    ("get", "/api/dashboard/stream"): {200, 400, 401, 403, 429, 503},
    ("post", "/api/keys"): {201, 400, 401, 403, 409, 413, 415, 422, 503},
    ("get", "/api/keys"): {200, 401, 503},
    ("delete", "/api/keys/{key_id}"): {204, 400, 401, 403, 404, 413, 415, 503},
    ("post", "/api/auth/mfa/verify"): {200, 400, 401, 403, 413, 415, 422, 429, 503},
    ("get", "/api/auth/sessions"): {200, 401, 503},
    ("delete", "/api/auth/sessions/{session_id}"): {204, 400, 401, 403, 404, 413, 415, 503},
    ("get", "/api/auth/mfa"): {200, 401, 503},
    ("post", "/api/auth/mfa/totp"): {200, 401, 403, 409, 413, 415, 503},
    ("post", "/api/auth/mfa/totp/confirm"): {200, 400, 401, 403, 409, 413, 415, 422, 503},
    ("post", "/api/auth/mfa/disable"): {204, 400, 401, 403, 409, 413, 415, 422, 429, 503},
    ("post", "/api/auth/mfa/recovery-codes"): {200, 400, 401, 403, 409, 413, 415, 422, 429, 503},
    ("get", "/api/auth/activity"): {200, 400, 401, 503},
    ("get", "/healthz"): {200},
    ("get", "/readyz"): {200, 503},
    ("get", "/metrics"): {200},
}


@pytest.fixture
async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][path][method]
    return found


def schema_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def parameter(document: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        p["schema"] for p in operation(document, method, path)["parameters"] if p["name"] == name
    )
    return found


async def test_every_operation_lists_every_status_it_answers(openapi: dict[str, Any]) -> None:
    documented = {
        (method, path): {int(status) for status in op["responses"]}
        for path, item in openapi["paths"].items()
        for method, op in item.items()
    }

    assert {key: documented.get(key) for key in STATUSES} == STATUSES
    for (method, path), statuses in documented.items():
        if operation(openapi, method, path).get("security"):
            assert {401, 503} <= statuses, (method, path)


async def test_the_parameters_are_what_a_client_sends_and_no_injected_service(
    openapi: dict[str, Any],
) -> None:
    """Handlers take their services as parameters too (engage_http.dependencies):
    none of those may reach the document as a query parameter."""
    documented = {
        (method, path): sorted(p["name"] for p in op.get("parameters", ()))
        for path, item in openapi["paths"].items()
        for method, op in item.items()
        if op.get("parameters")
    }

    assert documented == {
        ("post", "/api/auth/logout"): ["scope"],
        ("delete", "/api/auth/sessions/{session_id}"): ["session_id"],
        ("get", "/api/auth/activity"): ["cursor", "limit"],
        ("get", METRICS): ["cursor", "limit", "metric_type", "since", "until"],
        ("post", METRICS): ["Idempotency-Key"],
        ("post", f"{METRICS}/batch"): ["Idempotency-Key"],
        ("get", SUMMARY): ["bucket", "metric_type", "since", "tz", "until"],
        ("get", "/api/dashboard/stream"): ["Last-Event-ID", "after", "metric_type"],
        ("delete", "/api/keys/{key_id}"): ["key_id"],
    }


async def test_no_body_field_is_named_as_an_injected_service(openapi: dict[str, Any]) -> None:
    """Litestar takes a body error on a field named like a dependency for the
    dependency's own (a 500, not a 422): the names must stay apart."""
    injected = {"principal", *dependencies(Providers(POLICY, State({"stopping": False})))}
    fields = {
        name
        for schema in openapi["components"]["schemas"].values()
        for name in schema.get("properties", {})
    }

    assert "email" in fields
    assert fields & injected == set()


async def test_every_error_is_a_problem_json_of_one_schema(openapi: dict[str, Any]) -> None:
    for path, item in openapi["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if int(status) < 400 or path == "/readyz":
                    continue
                assert response["content"] == {"application/problem+json": {"schema": PROBLEM}}, (
                    method,
                    path,
                    status,
                )

    problem = schema_of(openapi, "Problem")
    assert sorted(problem["required"]) == ["detail", "status", "title", "type"]
    field = schema_of(openapi, "ProblemField")
    assert sorted(field["properties"]) == ["field", "message"]


def test_a_path_parameter_or_body_without_a_declared_400_documents_a_problem() -> None:
    @get("/things/{thing_id:int}", sync_to_thread=False)
    def thing(thing_id: Annotated[int, PathParameter()]) -> None: ...

    @post("/things", sync_to_thread=False)
    def new_thing(data: JSONBody[dict[str, str]]) -> None: ...

    @get("/things", sync_to_thread=False)
    def things() -> None: ...

    app = Litestar([thing, new_thing, things], plugins=[ParameterProblems()])
    paths = app.openapi_schema.to_schema()["paths"]

    for method, path in [("get", "/things/{thing_id}"), ("post", "/things")]:
        bad = paths[path][method]["responses"]["400"]
        assert bad["content"] == {"application/problem+json": {"schema": PROBLEM}}, method
    assert "400" not in paths["/things"]["get"]["responses"]


async def test_a_204_has_no_content_and_metrics_are_prometheus_text(
    openapi: dict[str, Any],
) -> None:
    for method, path in [
        ("post", "/api/auth/logout"),
        ("post", "/api/auth/password"),
        ("delete", "/api/auth/me"),
    ]:
        assert "content" not in operation(openapi, method, path)["responses"]["204"]

    content = operation(openapi, "get", "/metrics")["responses"]["200"]["content"]
    assert content == {"text/plain": {"schema": {"type": "string"}}}


async def test_numbers_are_numbers(openapi: dict[str, Any]) -> None:
    assert schema_of(openapi, "MetricOut")["properties"]["metric_value"]["type"] == "number"
    point = schema_of(openapi, "PointOut")["properties"]
    assert {point[name]["type"] for name in ("sum", "avg", "min", "max")} == {"number"}
    number, text = schema_of(openapi, "MetricIn")["properties"]["metric_value"]["oneOf"]
    assert number == {
        "type": "number",
        "exclusiveMinimum": -1e15,
        "exclusiveMaximum": 1e15,
    }
    assert text["type"] == "string"
    assert text["maxLength"] == 64


async def test_the_validation_rules_are_schema_constraints(openapi: dict[str, Any]) -> None:
    credentials = schema_of(openapi, "Credentials")["properties"]
    assert credentials["email"]["format"] == "email"
    assert credentials["email"]["maxLength"] == 254
    assert (credentials["password"]["minLength"], credentials["password"]["maxLength"]) == (8, 256)
    metric = schema_of(openapi, "MetricIn")["properties"]
    assert metric["metric_type"]["maxLength"] == 100
    assert metric["metric_type"]["minLength"] == 1
    assert metric["metric_type"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
    assert metric["recorded_at"]["format"] == "date-time"
    batch = schema_of(openapi, "MetricBatchIn")["properties"]["items"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 1000)
    for name in ("Credentials", "PasswordChange", "PasswordConfirmation", "MetricIn"):
        assert schema_of(openapi, name)["additionalProperties"] is False, name

    limit = parameter(openapi, "get", METRICS, "limit")
    assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 500)
    for path in (METRICS, SUMMARY):
        for name in ("since", "until"):
            assert parameter(openapi, "get", path, name)["format"] == "date-time"
        assert parameter(openapi, "get", path, "metric_type")["maxLength"] == 100
    assert parameter(openapi, "get", SUMMARY, "bucket")["enum"] == ["hour", "day", "week"]
    assert "Europe/Berlin" in parameter(openapi, "get", SUMMARY, "tz")["enum"]
    assert parameter(openapi, "post", "/api/auth/logout", "scope")["enum"] == ["current", "all"]
    session = parameter(openapi, "delete", "/api/auth/sessions/{session_id}", "session_id")
    assert session["format"] == "uuid"
    key = parameter(openapi, "post", METRICS, "Idempotency-Key")
    assert key["pattern"] == "^[!-~]{1,255}$"


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("12.5", True),
        ("-000000000000000000999999999999999.99", True),
        (".5", True),
        ("+7", True),
        ("1000000000000000", False),  # 10^15
        ("1e3", False),  # accepted by the server, but no pattern can bound exponents
        ("1_000", False),
        (" 1", False),
    ],
)
async def test_the_documented_numeric_strings_are_ones_the_server_takes(
    openapi: dict[str, Any], text: str, valid: bool
) -> None:
    pattern = schema_of(openapi, "MetricIn")["properties"]["metric_value"]["oneOf"][1]["pattern"]
    assert (re.search(pattern, text) is not None) is valid


async def test_the_email_pattern_refuses_special_use_domains(openapi: dict[str, Any]) -> None:
    pattern = schema_of(openapi, "Credentials")["properties"]["email"]["pattern"]

    assert re.search(pattern, "ada@example.com")
    assert not re.search(pattern, "ada@lab.test")
    assert not re.search(pattern, "ada@printer.LOCAL")


async def test_options_and_405_name_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    options = await client.options("/api/auth/me")
    refused = await client.put("/api/auth/me")

    assert options.status_code == 204
    assert options.headers["allow"] == "DELETE, GET, HEAD, OPTIONS"  # HEAD: see test_head.py
    assert refused.status_code == 405
    assert refused.headers.get_list("allow") == ["DELETE, GET, HEAD, OPTIONS"]  # one header
    assert (await client.options(METRICS)).headers["allow"] == "GET, HEAD, OPTIONS, POST"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/healthz", "GET, HEAD, OPTIONS"),
        ("DELETE", "/metrics", "GET, HEAD, OPTIONS"),
        ("POST", "/schema/openapi.json", "GET, HEAD, OPTIONS"),
        ("GET", "/api/auth/signup", "OPTIONS, POST"),
        ("PUT", "/api/keys/some-key", "DELETE, OPTIONS"),
        ("POST", "/", "GET, HEAD, OPTIONS"),
        ("DELETE", "/schema/assets/docs.js", "GET, HEAD, OPTIONS"),
        ("POST", "/api/dashboard/stream", "GET, OPTIONS"),  # no HEAD: see test_head.py
    ],
)
async def test_a_405_has_one_allow_header_and_options_the_same(
    client: httpx.AsyncClient,
    expect_problem: Callable[..., dict[str, Any]],
    method: str,
    path: str,
    allow: str,
) -> None:
    """RFC 9110, 15.5.6 and 10.2.1: the methods of the path, in one Allow header."""
    refused = await client.request(method, path)
    options = await client.options(path)

    expect_problem(refused, 405)
    assert refused.headers.get_list("allow") == [allow]
    assert options.status_code == 204
    assert options.headers.get_list("allow") == [allow]


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ({"limit": "0"}, ["limit"]),
        ({"limit": "ten"}, ["limit"]),
        ({"since": "garbage"}, ["since"]),
        ({"until": "\u00b1"}, ["until"]),
        ({"limit": "0", "since": "garbage", "metric_type": ""}, ["limit", "since", "metric_type"]),
    ],
)
async def test_every_bad_query_parameter_is_one_invalid_query_problem(
    api: Any,
    client: httpx.AsyncClient,
    expect_problem: Callable[..., dict[str, Any]],
    query: dict[str, str],
    fields: list[str],
) -> None:
    auth = await api.new_user("ada@example.com")

    response = await client.get(METRICS, params=query, headers=auth)

    body = expect_problem(response, 400, fields=fields)
    assert body["type"] == "urn:engage-suite:problem:invalid-query"


async def test_a_bad_logout_scope_is_an_invalid_query_naming_scope(
    api: Any, client: httpx.AsyncClient, expect_problem: Callable[..., dict[str, Any]]
) -> None:
    auth = await api.new_user("ada@example.com")

    response = await client.post("/api/auth/logout", params={"scope": "some"}, headers=auth)

    body = expect_problem(response, 400, fields=["scope"])
    assert body["type"] == "urn:engage-suite:problem:invalid-query"


@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01T00:00:00+05:00",  # before what a datetime holds in UTC
        "9999-12-31T23:59:59-23:59",  # after it
        "1960-06-01T12:00:00Z",
        "2026-01-01t10:00:00z",  # RFC 3339 allows lower case
    ],
)
async def test_since_and_until_take_any_rfc3339_moment(
    api: Any, client: httpx.AsyncClient, moment: str
) -> None:
    auth = await api.new_user("ada@example.com")

    for path in (METRICS, SUMMARY):
        for name in ("since", "until"):
            response = await client.get(path, params={name: moment}, headers=auth)
            assert response.status_code == 200, (path, name, response.text)


# --- the docs page ------------------------------------------------------------------

_ASSET = re.compile(r'(?:src|href)="([^"]+)"')


async def test_the_docs_page_loads_only_assets_engage_serves(client: httpx.AsyncClient) -> None:
    page = await client.get("/schema")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script>" not in page.text  # no inline script: the page's init is a file
    assets = _ASSET.findall(page.text)
    assert len(assets) == 5
    for url in assets:
        assert url.startswith(("/schema/assets/", "/schema/swagger-ui-")), url
        served = await client.get(url)
        assert served.status_code == 200, url
        kind = served.headers["content-type"]
        expected = {"js": "javascript", "css": "text/css", "png": "image/png"}[url.rsplit(".")[-1]]
        assert expected in kind, (url, kind)
    assert "/schema/swagger-ui-0.3.0/swagger-ui-bundle.js" in assets


@pytest.mark.parametrize(
    "path",
    [
        "/schema/swagger",
        "/schema/redoc",
        "/schema/assets/nothing.js",
        "/schema/assets",
        # Paths the file system refuses: never looked up there, so no 500.
        "/schema/assets/%00",
        "/schema/assets/docs.js%00",
        f"{SWAGGER_UI}/swagger-ui.css%00",
        f"{SWAGGER_UI}/{'a' * 300}",
        f"{SWAGGER_UI}/favicon-32x32.png/x",
        # The bundle's files the docs page does not load: its demo page (an inline
        # script, the petstore's API on swagger.io) and what that page loads.
        f"{SWAGGER_UI}/index.html",
        f"{SWAGGER_UI}/index.css",
        f"{SWAGGER_UI}/swagger-ui-standalone-preset.js",
    ],
)
async def test_unknown_schema_paths_are_problem_404s(
    client: httpx.AsyncClient, expect_problem: Callable[..., dict[str, Any]], path: str
) -> None:
    expect_problem(await client.get(path), 404)
    if path.startswith((f"{SWAGGER_UI}/", "/schema/assets/")):  # a file route's
        expect_problem(await client.options(path), 404)


ERROR_HEADERS = {"401": "WWW-Authenticate", "429": "Retry-After", "503": "Retry-After"}


async def test_every_401_429_and_503_names_the_header_it_carries(
    openapi: dict[str, Any],
) -> None:
    seen = 0
    for path, item in openapi["paths"].items():
        for method, op in item.items():
            for status, header in ERROR_HEADERS.items():
                if status in op["responses"]:
                    seen += 1
                    headers = op["responses"][status].get("headers", {})
                    assert header in headers, (method, path, status)
                    assert headers[header]["required"] is True
    assert seen > 40


@pytest.mark.parametrize(
    ("method", "path", "status", "sets"),
    [
        ("post", "/api/auth/login", "200", True),
        ("post", "/api/auth/mfa/verify", "200", True),
        ("post", "/api/auth/refresh", "200", True),
        ("post", "/api/auth/logout", "204", False),
        ("delete", "/api/auth/me", "204", False),
        ("post", "/api/auth/password/reset", "204", False),
    ],
)
async def test_operations_that_set_or_clear_the_session_cookies_say_so(
    openapi: dict[str, Any], method: str, path: str, status: str, sets: bool
) -> None:
    headers = operation(openapi, method, path)["responses"][status].get("headers", {})
    described = headers["Set-Cookie"]["description"]
    assert "engage_access" in described
    assert "engage_refresh" in described
    assert ("cleared" in described) is not sets


async def test_a_browser_login_sets_the_cookies_its_document_names(
    client: httpx.AsyncClient, openapi: dict[str, Any]
) -> None:
    credentials = {"email": "doc-cookies@example.com", "password": "correct horse battery"}
    assert (await client.post("/api/auth/signup", json=credentials)).status_code == 201
    answer = await client.post("/api/auth/login", json=credentials)
    assert answer.status_code == 200
    described = operation(openapi, "post", "/api/auth/login")["responses"]["200"]["headers"]
    for cookie in ("engage_access", "engage_refresh"):
        assert cookie in answer.cookies
        assert cookie in described["Set-Cookie"]["description"]
    assert "Set-Cookie" not in operation(openapi, "post", "/api/auth/token")["responses"][
        "200"
    ].get("headers", {})


async def test_the_docs_files_are_kept_by_their_release_and_named_by_options(
    client: httpx.AsyncClient,
) -> None:
    """Swagger UI's URLs carry its release, so its files are kept for good; the page's
    own (the same URL in every release) are revalidated by their ETag."""
    await client.get("/healthz")  # the csrftoken cookie: no answer below sets it
    for url, cache_control in [
        (f"{SWAGGER_UI}/swagger-ui-bundle.js", "public, max-age=31536000, immutable"),
        (f"{SWAGGER_UI}/favicon-32x32.png", "public, max-age=31536000, immutable"),
        ("/schema/assets/docs.js", "no-cache"),
    ]:
        response = await client.get(url, headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == cache_control, url
        assert response.headers["vary"] == "Accept-Encoding"
        revalidated = await client.get(url, headers={"If-None-Match": response.headers["etag"]})
        assert revalidated.status_code == 304, url
        options = await client.options(url)
        assert options.status_code == 204
        assert options.headers.get_list("allow") == ["GET, HEAD, OPTIONS"]
    script = await client.get(f"{SWAGGER_UI}/swagger-ui.css", headers={"Accept-Encoding": "gzip"})
    assert script.headers["content-encoding"] == "gzip"
