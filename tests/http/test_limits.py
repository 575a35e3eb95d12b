"""Abuse limits: auth requests per client address, failed logins per email; and no oracle
telling an unknown email from a wrong password."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.testing.transport import TestClientTransport as Transport

from engage_adapters.bootstrap import HttpPolicy, build_services
from engage_adapters.settings import Settings
from engage_core.ports import PasswordHasher
from engage_core.testing import FakePasswordHasher
from engage_http.app import create_app

PASSWORD = "correct horse battery staple"
Problem = Callable[..., dict[str, Any]]
FromAddress = Callable[[str], httpx.AsyncClient]


class _AddressTransport(Transport):  # type: ignore[type-arg]
    """Requests into the running app as if from another client address."""

    def __init__(self, client: AsyncTestClient[Litestar], address: str) -> None:
        super().__init__(client=client)
        self.address = address

    def parse_request(self, request: httpx.Request) -> dict[str, Any]:
        scope = super().parse_request(request)
        scope["client"] = (self.address, 50000)
        return scope

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def from_address(client: AsyncTestClient[Litestar]) -> AsyncIterator[FromAddress]:
    opened: list[httpx.AsyncClient] = []

    def open_client(address: str) -> httpx.AsyncClient:
        other = httpx.AsyncClient(
            base_url=client.base_url,
            transport=_AddressTransport(client, address),  # type: ignore[arg-type]
        )
        opened.append(other)
        return other

    yield open_client
    for other in opened:
        await other.aclose()


def expect_retry_after(response: httpx.Response, expect_problem: Problem, most: int) -> int:
    expect_problem(response, 429)
    seconds = int(response.headers["retry-after"])
    assert 1 <= seconds <= most
    return seconds


def credentials(email: str = "ada@example.com", password: str = PASSWORD) -> dict[str, str]:
    return {"email": email, "password": password}


# --- per client address ------------------------------------------------------------------


async def test_signup_login_token_and_refresh_share_30_requests_a_minute_per_address(
    client: httpx.AsyncClient, api: Any, expect_problem: Problem
) -> None:
    await api.sign_up("ada@example.com")  # 1
    await api.log_in("ada@example.com")  # 2
    for _ in range(10):  # 12
        await api.bearer("ada@example.com")
    for _ in range(8):  # 20
        assert (await client.post("/api/auth/refresh", headers=api.csrf(client))).status_code == 200
    for _ in range(10):  # 30
        await api.log_in("ada@example.com")

    attempts = [
        await client.post("/api/auth/token", json=credentials()),
        await client.post("/api/auth/login", json=credentials()),
        await client.post("/api/auth/signup", json=credentials("bob@example.com")),
        await client.post("/api/auth/refresh", headers=api.csrf(client)),
    ]

    for response in attempts:
        expect_retry_after(response, expect_problem, most=60)
    assert (await client.get("/api/auth/me")).status_code == 200  # not an auth entry point


async def test_the_address_limit_is_per_address(
    client: httpx.AsyncClient, api: Any, from_address: FromAddress, expect_problem: Problem
) -> None:
    await api.sign_up("ada@example.com")
    noisy = from_address("203.0.113.7")
    for _ in range(30):
        await noisy.post("/api/auth/token", json=credentials())
    expect_problem(await noisy.post("/api/auth/token", json=credentials()), 429)

    quiet = await from_address("198.51.100.9").post("/api/auth/token", json=credentials())

    assert quiet.status_code == 200


@pytest.fixture
def environ(environ: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """Indirectly parametrized with extra ENGAGE_* settings."""
    return {**environ, **getattr(request, "param", {})}


@pytest.mark.parametrize("environ", [{"ENGAGE_AUTH_RATE_PER_MINUTE": "3"}], indirect=True)
async def test_the_address_limit_follows_its_setting(
    client: httpx.AsyncClient, environ: dict[str, str], expect_problem: Problem
) -> None:
    for _ in range(3):
        response = await client.post("/api/auth/token", json=credentials("nobody@example.com"))
        assert response.status_code == 401

    response = await client.post("/api/auth/token", json=credentials("nobody@example.com"))

    expect_retry_after(response, expect_problem, most=60)


@pytest.mark.parametrize("environ", [{"ENGAGE_AUTH_RATE_PER_MINUTE": "3"}], indirect=True)
async def test_the_address_limit_is_one_for_every_worker_of_the_deployment(
    client: httpx.AsyncClient,
    settings: Settings,
    hasher: PasswordHasher,
    policy: HttpPolicy,
    expect_problem: Problem,
) -> None:
    # Another worker: an app of its own (its own process state) over the same database.
    other = create_app(lambda: build_services(settings, hasher=hasher), policy)
    async with AsyncTestClient(other) as second:
        for worker in (client, second, client):
            response = await worker.post("/api/auth/token", json=credentials("nobody@example.com"))
            assert response.status_code == 401

        response = await second.post("/api/auth/token", json=credentials("nobody@example.com"))

    expect_retry_after(response, expect_problem, most=60)


# --- failed logins per email ------------------------------------------------------------------


async def test_five_failed_logins_lock_the_email_even_against_the_right_password(
    client: httpx.AsyncClient, api: Any, expect_problem: Problem
) -> None:
    await api.sign_up("ada@example.com")
    for _ in range(5):
        wrong = await client.post("/api/auth/login", json=credentials(password="wrong password"))
        expect_problem(wrong, 401)

    right = await client.post("/api/auth/login", json=credentials())
    token = await client.post("/api/auth/token", json=credentials())

    expect_retry_after(right, expect_problem, most=15 * 60)
    expect_retry_after(token, expect_problem, most=15 * 60)
    assert not [c for c in right.headers.get_list("set-cookie") if c.startswith("engage_")]


async def test_failures_count_across_login_and_token_and_letter_case(
    client: httpx.AsyncClient, api: Any, expect_problem: Problem
) -> None:
    await api.sign_up("ada@example.com")
    for path, email in [
        ("/api/auth/login", "ada@example.com"),
        ("/api/auth/token", "ADA@example.com"),
        ("/api/auth/login", "Ada@Example.com"),
        ("/api/auth/token", "ada@EXAMPLE.COM"),
        ("/api/auth/login", "aDa@example.com"),
    ]:
        expect_problem(await client.post(path, json=credentials(email, "wrong password")), 401)

    expect_problem(await client.post("/api/auth/token", json=credentials()), 429)


async def test_the_lock_is_per_email(
    client: httpx.AsyncClient, api: Any, expect_problem: Problem
) -> None:
    await api.sign_up("ada@example.com")
    await api.sign_up("bob@example.com")
    for _ in range(5):
        await client.post("/api/auth/login", json=credentials(password="wrong password"))

    bob = await client.post("/api/auth/login", json=credentials("bob@example.com"))

    assert bob.status_code == 200


async def test_an_unknown_email_is_locked_the_same_way(
    client: httpx.AsyncClient, expect_problem: Problem
) -> None:
    for _ in range(5):
        expect_problem(await client.post("/api/auth/login", json=credentials("x@example.com")), 401)

    expect_problem(await client.post("/api/auth/login", json=credentials("x@example.com")), 429)


async def test_successful_logins_do_not_count_as_failures(
    client: httpx.AsyncClient, api: Any
) -> None:
    await api.sign_up("ada@example.com")

    for _ in range(8):
        await api.log_in("ada@example.com")


@pytest.mark.parametrize("environ", [{"ENGAGE_LOGIN_FAILURES_PER_EMAIL": "2"}], indirect=True)
async def test_the_failure_limit_follows_its_setting(
    client: httpx.AsyncClient, api: Any, environ: dict[str, str], expect_problem: Problem
) -> None:
    await api.sign_up("ada@example.com")
    for _ in range(2):
        await client.post("/api/auth/login", json=credentials(password="wrong password"))

    expect_problem(await client.post("/api/auth/login", json=credentials()), 429)


# --- no oracle -----------------------------------------------------------------------------


def answer(response: httpx.Response) -> tuple[int, dict[str, Any], dict[str, str]]:
    """What a caller can tell from a response, less what differs on every request."""
    varying = {"date", "x-request-id", "content-length"}
    headers = {k: v for k, v in response.headers.items() if k not in varying}
    return response.status_code, response.json(), headers


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/token"])
async def test_unknown_email_and_wrong_password_get_the_same_answer_after_the_same_work(
    client: httpx.AsyncClient, api: Any, hasher: FakePasswordHasher, path: str
) -> None:
    await api.sign_up("ada@example.com")
    await client.post(path, json=credentials("warm-up@example.com"))  # makes the dummy hash

    before = hasher.verify_calls
    wrong_password = await client.post(path, json=credentials(password="wrong password"))
    checks_for_wrong_password = hasher.verify_calls - before
    before = hasher.verify_calls
    unknown_email = await client.post(path, json=credentials("nobody@example.com"))
    checks_for_unknown_email = hasher.verify_calls - before
    bad_syntax = await client.post(path, json=credentials("not-an-email"))
    short_password = await client.post(path, json=credentials(password="short"))

    assert wrong_password.status_code == 401
    assert answer(unknown_email) == answer(wrong_password)
    assert answer(bad_syntax) == answer(wrong_password)
    assert answer(short_password) == answer(wrong_password)
    assert checks_for_wrong_password == checks_for_unknown_email == 1


# --- behind proxies (ENGAGE_TRUSTED_PROXIES) ---------------------------------------------


def _stranger() -> str:
    """A new unknown email each time: these tests are about addresses, not the
    per-email limit on failed logins."""
    return f"nobody-{uuid.uuid4().hex[:12]}@example.com"


async def _spend_three(sender: httpx.AsyncClient, forwarded_for: str | None) -> None:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    for _ in range(3):
        response = await sender.post(
            "/api/auth/token", json=credentials(_stranger()), headers=headers
        )
        assert response.status_code == 401


async def _refused(sender: httpx.AsyncClient, forwarded_for: str | None) -> bool:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = await sender.post("/api/auth/token", json=credentials(_stranger()), headers=headers)
    assert response.status_code in (401, 429), response.text
    return response.status_code == 429


@pytest.mark.parametrize("environ", [{"ENGAGE_AUTH_RATE_PER_MINUTE": "3"}], indirect=True)
async def test_without_trusted_proxies_x_forwarded_for_is_ignored(
    environ: dict[str, str], from_address: FromAddress
) -> None:
    client = from_address("203.0.113.7")
    await _spend_three(client, "198.51.100.1")

    # Another claimed address does not buy another budget.
    assert await _refused(client, "198.51.100.2")
    assert await _refused(client, None)


@pytest.mark.parametrize(
    "environ",
    [{"ENGAGE_AUTH_RATE_PER_MINUTE": "3", "ENGAGE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"}],
    indirect=True,
)
async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(
    environ: dict[str, str], from_address: FromAddress
) -> None:
    proxy = from_address("10.1.2.3")
    await _spend_three(proxy, "203.0.113.7")

    assert await _refused(proxy, "203.0.113.7")
    # A client cannot escape by prepending an address: the proxy appended the real one.
    assert await _refused(proxy, "198.51.100.50, 203.0.113.7")
    # Through two trusted proxies, the address the outer one saw counts.
    assert await _refused(proxy, "203.0.113.7, 192.0.2.1")
    # Another client behind the same proxy has its own budget.
    assert not await _refused(proxy, "203.0.113.8")
    # The proxy's own requests (no header) count against the proxy's address.
    await _spend_three(proxy, None)
    assert await _refused(proxy, None)


@pytest.mark.parametrize(
    "environ",
    [{"ENGAGE_AUTH_RATE_PER_MINUTE": "3", "ENGAGE_TRUSTED_PROXIES": "10.0.0.0/8"}],
    indirect=True,
)
async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(
    environ: dict[str, str], from_address: FromAddress
) -> None:
    direct = from_address("203.0.113.7")
    await _spend_three(direct, "10.9.9.9")

    assert await _refused(direct, "198.51.100.3")
