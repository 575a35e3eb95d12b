"""Operations: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
from litestar import Litestar

from engage_adapters.bootstrap import HttpPolicy, Services, Storage, build_services
from engage_adapters.postgres.pool import open_pool, ping
from engage_adapters.settings import Settings
from engage_core.ports import PasswordHasher
from engage_core.testing import FakeClock
from engage_http.app import create_app

METRICS = "/api/dashboard/metrics"
CONTRACT = {
    "/api/auth/signup": {"post"},
    "/api/auth/login": {"post"},
    "/api/auth/token": {"post"},
    "/api/auth/refresh": {"post"},
    "/api/auth/logout": {"post"},
    "/api/auth/me": {"get", "delete"},
    "/api/auth/password": {"post"},
    "/api/dashboard/metrics": {"get", "post"},
    "/api/dashboard/metrics/batch": {"post"},
    "/api/dashboard/summary": {"get"},
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
}


# --- liveness and readiness -----------------------------------------------------------------


async def test_healthz_is_200(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz_is_200_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


@pytest.mark.parametrize("storage", ["memory"])
async def test_readyz_is_200_with_nothing_to_check(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.fixture
def app(
    request: pytest.FixtureRequest,
    settings: Settings,
    storage: Storage,
    hasher: PasswordHasher,
    clock: FakeClock,
    policy: HttpPolicy,
    database_url: str | None,
) -> Litestar:
    """The app; with ``database_down`` in the test's fixtures, its readiness probe
    asks a pool that is already closed, as when PostgreSQL has gone away."""
    if "database_down" not in request.fixturenames:
        return create_app(
            lambda: build_services(settings, storage=storage, hasher=hasher, clock=clock), policy
        )

    @asynccontextmanager
    async def services() -> AsyncIterator[Services]:
        async with build_services(
            settings, storage="postgres", hasher=hasher, clock=clock
        ) as built:
            assert database_url is not None
            gone = await open_pool(database_url, max_size=1)
            await gone.close()
            built.probes["database"] = partial(ping, gone)
            yield built

    return create_app(services, policy)


@pytest.fixture
def database_down() -> None:
    """Marker: see ``app``."""


async def test_readyz_is_503_while_the_database_is_unreachable(
    database_down: None, client: httpx.AsyncClient
) -> None:
    errors = {"method": "GET", "path": "/readyz", "status_code": "503"}
    before = sample((await client.get("/metrics")).text, "engage_requests_error_total", **errors)

    response = await client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] != "ok"
    assert body["checks"]["database"] != "ok"
    after = sample((await client.get("/metrics")).text, "engage_requests_error_total", **errors)
    assert after == before + 1  # a 5xx is counted as an error


async def test_healthz_stays_200_while_the_database_is_unreachable(
    database_down: None, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/healthz")).status_code == 200


# --- Prometheus --------------------------------------------------------------------------


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match[3])
    return 0.0


async def test_metrics_is_prometheus_text_counting_requests_by_route_and_status(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/metrics")).text

    await client.get("/healthz")
    await client.get("/healthz")
    await client.get("/api/auth/me")
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE engage_requests_total counter" in response.text
    healthz = {"method": "GET", "path": "/healthz", "status_code": "200"}
    me = {"method": "GET", "path": "/api/auth/me", "status_code": "401"}
    for labels, count in [(healthz, 2), (me, 1)]:
        for name in ("engage_requests_total", "engage_request_duration_seconds_count"):
            grown = sample(response.text, name, **labels) - sample(before, name, **labels)
            assert grown == count, name
    in_progress = {"method": "GET", "path": "/healthz"}
    assert sample(response.text, "engage_requests_in_progress", **in_progress) == 0
    assert sample(response.text, "engage_requests_in_progress", path="/metrics") == 1


async def test_metrics_count_requests_no_route_takes_under_one_path_never_their_own(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/metrics")).text

    assert (await client.get("/scan/wp-login.php")).status_code == 404
    assert (await client.get("/scan/.env")).status_code == 404
    assert (await client.put("/healthz")).status_code == 405
    assert (await client.request("PROPFIND", "/healthz")).status_code == 405
    after = (await client.get("/metrics")).text

    for method, status, count in [("GET", "404", 2), ("PUT", "405", 1), ("OTHER", "405", 1)]:
        labels = {"method": method, "path": "unrouted", "status_code": status}
        for name in ("engage_requests_total", "engage_request_duration_seconds_count"):
            grown = sample(after, name, **labels) - sample(before, name, **labels)
            assert grown == count, (name, labels)
    assert "/scan" not in after
    assert "PROPFIND" not in after


# --- OpenAPI ------------------------------------------------------------------------------


@pytest.fixture
async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def parameters(openapi: dict[str, Any], path: str, method: str) -> set[tuple[str, str]]:
    return {(p["in"], p["name"]) for p in openapi["paths"][path][method].get("parameters", [])}


async def test_the_openapi_document_lists_every_contract_path_and_method(
    openapi: dict[str, Any],
) -> None:
    documented = {
        path: {m for m in operations if m in {"get", "post", "put", "patch", "delete"}}
        for path, operations in openapi["paths"].items()
    }

    assert openapi["openapi"].startswith("3.")
    for path, methods in CONTRACT.items():
        assert methods <= documented.get(path, set()), path


async def test_the_openapi_document_names_the_query_and_header_parameters(
    openapi: dict[str, Any],
) -> None:
    listing = {("query", name) for name in ("metric_type", "since", "until", "limit", "cursor")}
    summary = {("query", name) for name in ("bucket", "tz", "since", "until", "metric_type")}

    assert listing <= parameters(openapi, "/api/dashboard/metrics", "get")
    assert summary <= parameters(openapi, "/api/dashboard/summary", "get")
    assert ("query", "scope") in parameters(openapi, "/api/auth/logout", "post")
    for path in ("/api/dashboard/metrics", "/api/dashboard/metrics/batch"):
        assert ("header", "Idempotency-Key") in parameters(openapi, path, "post")


async def test_the_openapi_document_describes_the_request_bodies(
    openapi: dict[str, Any],
) -> None:
    for path, method in [
        ("/api/auth/signup", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/token", "post"),
        ("/api/auth/password", "post"),
        ("/api/auth/me", "delete"),
        ("/api/dashboard/metrics", "post"),
        ("/api/dashboard/metrics/batch", "post"),
    ]:
        body = openapi["paths"][path][method].get("requestBody", {})
        assert "application/json" in body.get("content", {}), (path, method)


async def test_metrics_count_a_request_refused_for_csrf_as_403(
    client: httpx.AsyncClient, api: Any
) -> None:
    await api.sign_up("ada@example.com")
    await api.log_in("ada@example.com")
    labels = {"method": "POST", "path": "/api/dashboard/metrics"}
    before = (await client.get("/metrics")).text

    refused = await client.post(METRICS, json={"metric_type": "views", "metric_value": 1})
    after = (await client.get("/metrics")).text

    assert refused.status_code == 403
    for status, grown in [("403", 1), ("200", 0), ("201", 0), ("500", 0)]:
        counted = sample(after, "engage_requests_total", **labels, status_code=status)
        assert (
            counted - sample(before, "engage_requests_total", **labels, status_code=status) == grown
        ), status


@pytest.fixture
def environ(environ: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """The suite's settings, with a test's overrides (``indirect`` parametrization)."""
    overrides: dict[str, str] = getattr(request, "param", {})
    return {**environ, **overrides}


@pytest.mark.parametrize(
    "environ",
    [{}, {"ENGAGE_CORS_ORIGINS": ""}],
    indirect=True,
    ids=["listed-origins", "same-origin-only"],
)
async def test_metrics_count_a_refused_preflight_as_the_403_it_is(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/metrics")).text
    refused = {
        "Origin": "https://evil.example.net",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }

    assert (await client.options(METRICS, headers=refused)).status_code == 403
    after = (await client.get("/metrics")).text

    def grown(status: str) -> float:
        return sum(
            sample(after, "engage_requests_total", **labels)
            - sample(before, "engage_requests_total", **labels)
            for path in (METRICS, "unrouted")
            if (labels := {"method": "OPTIONS", "path": path, "status_code": status})
        )

    assert (grown("403"), grown("204")) == (1, 0)
