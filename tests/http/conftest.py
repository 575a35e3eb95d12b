"""The HTTP API, driven in-process over real PostgreSQL (or the in-memory fakes).

``client`` is the app under test behind Litestar's AsyncTestClient (one browser
with its own cookie jar); ``new_browser()`` opens another browser on the same
running app. ``api`` holds the few steps most tests share (sign up, log in, get a
bearer token, record a metric) and ``expect_problem`` checks an RFC 9457 answer;
``db`` reads this test's PostgreSQL directly, behind the API's back.

Storage is PostgreSQL unless a module parametrizes ``storage``, e.g.
``pytestmark = pytest.mark.parametrize("storage", ["postgres", "memory"])``. Settings
come from ``environ``; override that fixture (or extend it) to change them.

The modules named in ``WITH_REDIS`` run every test twice: with the in-process
cache and limits, and with ``ENGAGE_REDIS_URL`` set to a real Redis (``shared_cache``).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

import httpx
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.testing.transport import TestClientTransport
from psycopg.conninfo import conninfo_to_dict

from engage_adapters.bootstrap import HttpPolicy, Storage, build_services, http_policy
from engage_adapters.settings import Settings, load_settings
from engage_core.ports import PasswordHasher
from engage_core.testing import FakeClock, FakePasswordHasher
from engage_http.app import create_app

JWT_SECRET = "http-suite secret: at least thirty-two bytes long"
TRUSTED_ORIGIN = "https://app.example.com"
PASSWORD = "correct horse battery staple"
PROBLEM_JSON = "application/problem+json"
TABLES = (
    "users, engagement_metrics, sessions, metric_rollups, idempotency_keys, mail_outbox"
    ", activity, rate_limits"
)

Client = httpx.AsyncClient
SharedCache = Literal["in-process", "redis"]

# Test modules that also run over Redis: sessions, limits and dashboards live there.
WITH_REDIS = frozenset(
    {
        "test_auth",
        "test_sessions",
        "test_metrics",
        "test_summary",
        "test_limits",
        "test_idempotency",
        "test_security",
        "test_errors",
        "test_telemetry",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "shared_cache" in metafunc.fixturenames and metafunc.definition.path.stem in WITH_REDIS:
        metafunc.parametrize("shared_cache", ["in-process", "redis"])


# --- the app under test -------------------------------------------------------------


@pytest.fixture
def storage() -> Storage:
    return "postgres"


@pytest.fixture
def clock() -> FakeClock:
    """Stands still at a real moment (so PyJWT's own clock accepts the tokens)."""
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def hasher() -> PasswordHasher:
    return FakePasswordHasher()


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    return {
        "ENGAGE_JWT_SECRET": JWT_SECRET,
        "ENGAGE_DATA_DIR": str(tmp_path),
        "ENGAGE_CORS_ORIGINS": TRUSTED_ORIGIN,
        "ENGAGE_COOKIE_SECURE": "false",
    }


@pytest.fixture
def database_url(request: pytest.FixtureRequest, storage: Storage) -> str | None:
    """This module's migrated database, emptied before the test (PostgreSQL only)."""
    if storage != "postgres":
        return None
    url: str = request.getfixturevalue("pg_url")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return url


def as_url(conninfo: str) -> str:
    """A ``postgresql://`` URL (what ENGAGE_DATABASE_URL takes) for a key=value conninfo."""
    params = conninfo_to_dict(conninfo)
    user = quote(str(params.pop("user", "")), safe="")
    password = quote(str(params.pop("password", "") or ""), safe="")
    dbname = quote(str(params.pop("dbname", "")), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgresql://{credentials}/{dbname}?{urlencode(params)}"


@pytest.fixture
def shared_cache() -> SharedCache:
    """Where cache and limits live: this process, or Redis (see ``WITH_REDIS``)."""
    return "in-process"


@pytest.fixture
def settings(
    request: pytest.FixtureRequest,
    environ: dict[str, str],
    database_url: str | None,
    shared_cache: SharedCache,
) -> Settings:
    extra = {"ENGAGE_DATABASE_URL": as_url(database_url)} if database_url else {}
    if shared_cache == "redis":
        extra["ENGAGE_REDIS_URL"] = request.getfixturevalue("fresh_redis_url")
    return load_settings({**environ, **extra})


@pytest.fixture
def policy(settings: Settings) -> HttpPolicy:
    """As ``engage serve`` builds it from the settings."""
    return http_policy(settings, bind_host="127.0.0.1")


@pytest.fixture
def app(
    settings: Settings,
    storage: Storage,
    hasher: PasswordHasher,
    clock: FakeClock,
    policy: HttpPolicy,
) -> Litestar:
    return create_app(
        lambda: build_services(settings, storage=storage, hasher=hasher, clock=clock), policy
    )


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as client:
        yield client


class _SharedTransport(TestClientTransport):  # type: ignore[type-arg]
    """Requests into the app that another test client runs (and closes)."""

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def new_browser(
    client: AsyncTestClient[Litestar],
) -> AsyncIterator[Callable[[], Client]]:
    """Another browser (its own cookie jar) on the app that ``client`` runs."""
    opened: list[Client] = []

    def open_browser() -> Client:
        browser = httpx.AsyncClient(
            base_url=client.base_url,
            transport=_SharedTransport(client=client),  # type: ignore[arg-type]
        )
        opened.append(browser)
        return browser

    yield open_browser
    for browser in opened:
        await browser.aclose()


@pytest.fixture(autouse=True)
def no_unhandled_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No request, however malformed, may reach the catch-all 500 handler."""
    caplog.set_level(logging.ERROR, logger="engage.http")
    yield
    unhandled = [
        r for r in caplog.records if r.name == "engage.http" and r.levelno >= logging.ERROR
    ]
    assert not unhandled, [r.getMessage() for r in unhandled]


# --- shared steps -------------------------------------------------------------------


class Api:
    """The steps many tests take, each checked as it goes."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def sign_up(
        self, email: str, password: str = PASSWORD, *, client: Client | None = None
    ) -> dict[str, Any]:
        response = await (client or self.client).post(
            "/api/auth/signup", json={"email": email, "password": password}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def log_in(
        self, email: str, password: str = PASSWORD, *, client: Client | None = None
    ) -> httpx.Response:
        """Log ``client`` (a browser) in; its jar then holds the session cookies."""
        response = await (client or self.client).post(
            "/api/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return response

    async def bearer(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        """The Authorization header of a fresh bearer token for this user."""
        response = await self.client.post(
            "/api/auth/token", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    async def new_user(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        """Sign up and return a bearer header for the new user."""
        await self.sign_up(email, password)
        return await self.bearer(email, password)

    @staticmethod
    def csrf(client: Client) -> dict[str, str]:
        """The header a browser's script sends: the csrftoken cookie, echoed."""
        token = client.cookies.get("csrftoken")
        assert token, "no csrftoken cookie in this browser"
        return {"X-CSRFToken": token}

    async def record(self, auth: Mapping[str, str], **metric: Any) -> dict[str, Any]:
        response = await self.client.post("/api/dashboard/metrics", json=metric, headers=auth)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def record_batch(self, auth: Mapping[str, str], items: list[dict[str, Any]]) -> None:
        response = await self.client.post(
            "/api/dashboard/metrics/batch", json={"items": items}, headers=auth
        )
        assert response.status_code == 201, response.text
        assert response.json() == {"inserted": len(items)}

    async def list_all(self, auth: Mapping[str, str], **query: Any) -> list[dict[str, Any]]:
        """Every metric the listing yields, following cursors page by page."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {**query, **({"cursor": cursor} if cursor else {})}
            response = await self.client.get("/api/dashboard/metrics", params=params, headers=auth)
            assert response.status_code == 200, response.text
            page = response.json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items


@pytest.fixture
def api(client: AsyncTestClient[Litestar]) -> Api:
    return Api(client)


def _expect_problem(
    response: httpx.Response, status: int, *, fields: list[str] | None = None
) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with this status (and, for a validation
    problem, exactly these fields at fault, in any order)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    assert body["status"] == status
    assert all(isinstance(body[k], str) and body[k] for k in ("type", "title", "detail")), body
    assert "Traceback" not in response.text
    if fields is not None:
        assert sorted(e["field"] for e in body["errors"]) == sorted(fields), body["errors"]
        assert all(isinstance(e["message"], str) and e["message"] for e in body["errors"])
    return body


@pytest.fixture
def expect_problem() -> Callable[..., dict[str, Any]]:
    return _expect_problem


# --- looking behind the API -----------------------------------------------------------


@pytest.fixture
def db(database_url: str | None) -> Callable[..., list[tuple[Any, ...]]]:
    """``db(sql, *params)``: rows straight from this test's database (PostgreSQL only)."""
    assert database_url is not None, "this test needs storage='postgres'"

    def rows(query: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(database_url) as conn:
            return conn.execute(query, params).fetchall()

    return rows


def exact(response: httpx.Response) -> Any:
    """The JSON body with every number as an exact Decimal."""
    return json.loads(response.text, parse_float=Decimal, parse_int=Decimal)


def jwt_payload(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without checking it."""
    part = token.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return payload


@pytest.fixture
def decimal_json() -> Callable[[httpx.Response], Any]:
    return exact


@pytest.fixture
def claims_of() -> Callable[[str], dict[str, Any]]:
    return jwt_payload
