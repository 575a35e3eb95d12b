"""API keys: created, listed and revoked by their user; bearer credentials for the
metrics endpoints only, within their scopes, until revoked or expired."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from engage_core.testing import FakeClock

pytestmark = pytest.mark.parametrize("storage", ["postgres", "memory"])

Problem = Callable[..., dict[str, Any]]
KEYS = "/api/keys"
METRICS = "/api/dashboard/metrics"
SUMMARY = "/api/dashboard/summary"
KEY_TEXT = re.compile(r"engk_[0-9a-f]{32}_[A-Za-z0-9_-]{40}")


@pytest.fixture
async def ada(api: Any) -> dict[str, str]:
    auth: dict[str, str] = await api.new_user("ada@example.com")
    return auth


async def create_key(
    client: httpx.AsyncClient, auth: dict[str, str], *scopes: str, **extra: Any
) -> dict[str, Any]:
    body = {"name": "kitchen sensor", "scopes": list(scopes), **extra}
    response = await client.post(KEYS, json=body, headers=auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


METRIC = {"metric_type": "steps", "metric_value": 3}


# --- creating, listing, revoking -----------------------------------------------------


async def test_a_new_key_is_shown_once_and_listed_without_its_text(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    created = await create_key(client, ada, "metrics:write", "metrics:read")

    assert created.keys() == {"id", "name", "prefix", "scopes", "created_at", "expires_at", "key"}
    assert KEY_TEXT.fullmatch(created["key"])
    assert created["key"].startswith(created["prefix"] + "_")
    assert created["scopes"] == ["metrics:read", "metrics:write"]
    assert created["expires_at"] is None
    listed = (await client.get(KEYS, headers=ada)).json()["items"]
    assert [item["id"] for item in listed] == [created["id"]]
    assert "key" not in listed[0]
    assert listed[0]["last_used_at"] is None
    assert listed[0]["prefix"] == created["prefix"]


async def test_the_key_is_stored_only_as_a_keyed_hash(
    client: httpx.AsyncClient, ada: dict[str, str], request: pytest.FixtureRequest, storage: str
) -> None:
    if storage != "postgres":
        pytest.skip("looks at the table")
    db: Callable[..., list[Any]] = request.getfixturevalue("db")
    created = await create_key(client, ada, "metrics:write")

    [(secret_hash,)] = db("SELECT secret_hash FROM api_keys WHERE id = %s", created["id"])
    secret = created["key"].rsplit("_", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{64}", secret_hash)
    assert secret not in secret_hash
    assert created["key"] not in secret_hash


async def test_each_user_sees_and_revokes_only_their_own_keys(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    key = await create_key(client, ada, "metrics:write")
    grace = await api.new_user("grace@example.com")

    assert (await client.get(KEYS, headers=grace)).json() == {"items": []}
    expect_problem(await client.delete(f"{KEYS}/{key['id']}", headers=grace), 404)
    expect_problem(await client.delete(f"{KEYS}/not-a-key-id", headers=ada), 404)
    assert (await client.post(METRICS, json=METRIC, headers=bearer(key))).status_code == 201


async def test_a_revoked_key_is_refused_at_once_and_leaves_the_list(
    client: httpx.AsyncClient, ada: dict[str, str], expect_problem: Problem
) -> None:
    key = await create_key(client, ada, "metrics:write")

    response = await client.delete(f"{KEYS}/{key['id']}", headers=ada)

    assert response.status_code == 204
    problem = expect_problem(await client.post(METRICS, json=METRIC, headers=bearer(key)), 401)
    assert "revoked" in problem["detail"]
    assert (await client.get(KEYS, headers=ada)).json() == {"items": []}
    expect_problem(await client.delete(f"{KEYS}/{key['id']}", headers=ada), 404)


async def test_creating_and_revoking_a_key_are_in_the_activity_log(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    key = await create_key(client, ada, "metrics:read")
    assert (await client.delete(f"{KEYS}/{key['id']}", headers=ada)).status_code == 204

    items = (await client.get("/api/auth/activity", headers=ada)).json()["items"]

    assert [item["kind"] for item in items[:2]] == ["api_key.revoked", "api_key.created"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": " ", "scopes": ["metrics:read"]}, ["name"]),
        ({"name": "x" * 101, "scopes": ["metrics:read"]}, ["name"]),
        # Control characters beyond ASCII's (NEL, a C1 one, breaks a line) and U+2028.
        ({"name": "kitchen\u0085sensor", "scopes": ["metrics:read"]}, ["name"]),
        ({"name": "kitchen\u009bsensor", "scopes": ["metrics:read"]}, ["name"]),
        ({"name": "kitchen\u2028sensor", "scopes": ["metrics:read"]}, ["name"]),
        ({"name": "ok", "scopes": []}, ["scopes"]),
        ({"name": "ok", "scopes": ["admin"]}, ["scopes"]),
        (
            {"name": "ok", "scopes": ["metrics:read"], "expires_at": "2020-01-01T00:00:00Z"},
            ["expires_at"],
        ),
        (
            {"name": "ok", "scopes": ["metrics:read"], "expires_at": "2030-01-01T00:00:00"},
            ["expires_at"],
        ),
        ({"name": "", "scopes": ["nope"], "expires_at": "soon"}, ["name", "scopes", "expires_at"]),
    ],
)
async def test_bad_key_requests_are_422_naming_every_field(
    client: httpx.AsyncClient,
    ada: dict[str, str],
    expect_problem: Problem,
    body: dict[str, Any],
    fields: list[str],
) -> None:
    expect_problem(await client.post(KEYS, json=body, headers=ada), 422, fields=fields)


async def test_creating_a_key_by_cookie_needs_the_csrf_header(
    client: httpx.AsyncClient, api: Any, expect_problem: Problem
) -> None:
    await api.sign_up("ada@example.com")
    await api.log_in("ada@example.com")
    body = {"name": "by cookie", "scopes": ["metrics:read"]}

    expect_problem(await client.post(KEYS, json=body), 403)
    response = await client.post(KEYS, json=body, headers=api.csrf(client))

    assert response.status_code == 201


# --- what a key may do ---------------------------------------------------------------


async def test_a_write_key_records_metrics_for_its_user_but_cannot_read(
    client: httpx.AsyncClient, ada: dict[str, str], expect_problem: Problem
) -> None:
    key = await create_key(client, ada, "metrics:write")

    recorded = await client.post(METRICS, json=METRIC, headers=bearer(key))
    batch = await client.post(f"{METRICS}/batch", json={"items": [METRIC]}, headers=bearer(key))

    assert (recorded.status_code, batch.status_code) == (201, 201)
    listed = (await client.get(METRICS, headers=ada)).json()["items"]
    assert len(listed) == 2
    problem = expect_problem(await client.get(METRICS, headers=bearer(key)), 403)
    assert "metrics:read" in problem["detail"]
    expect_problem(await client.get(SUMMARY, headers=bearer(key)), 403)


async def test_a_read_key_reads_but_cannot_record(
    client: httpx.AsyncClient, api: Any, ada: dict[str, str], expect_problem: Problem
) -> None:
    await api.record(ada, **METRIC)
    key = await create_key(client, ada, "metrics:read")

    assert len((await client.get(METRICS, headers=bearer(key))).json()["items"]) == 1
    assert (await client.get(SUMMARY, headers=bearer(key))).status_code == 200
    problem = expect_problem(await client.post(METRICS, json=METRIC, headers=bearer(key)), 403)
    assert "metrics:write" in problem["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/auth/me"),
        ("POST", "/api/auth/logout"),
        ("POST", "/api/auth/password"),
        ("GET", KEYS),
        ("POST", KEYS),
    ],
)
async def test_a_key_is_no_credential_for_accounts_or_keys(
    client: httpx.AsyncClient, ada: dict[str, str], expect_problem: Problem, method: str, path: str
) -> None:
    key = await create_key(client, ada, "metrics:write", "metrics:read")
    body = {"name": "more", "scopes": ["metrics:read"]} if path == KEYS else None

    response = await client.request(method, path, json=body, headers=bearer(key))

    expect_problem(response, 401)


async def test_a_key_cannot_revoke_keys(
    client: httpx.AsyncClient, ada: dict[str, str], expect_problem: Problem
) -> None:
    key = await create_key(client, ada, "metrics:write", "metrics:read")

    expect_problem(await client.delete(f"{KEYS}/{key['id']}", headers=bearer(key)), 401)
    assert (await client.post(METRICS, json=METRIC, headers=bearer(key))).status_code == 201


@pytest.mark.parametrize(
    "token",
    [
        "engk_",
        "engk_" + "0" * 32 + "_" + "A" * 40,
        "engk_nothex_" + "A" * 40,
    ],
)
async def test_unknown_or_malformed_keys_are_401(
    client: httpx.AsyncClient, ada: dict[str, str], expect_problem: Problem, token: str
) -> None:
    response = await client.get(METRICS, headers={"Authorization": f"Bearer {token}"})

    expect_problem(response, 401)


async def test_a_key_with_a_wrong_secret_is_401(
    client: httpx.AsyncClient, ada: dict[str, str], expect_problem: Problem
) -> None:
    key = await create_key(client, ada, "metrics:read")
    forged = key["key"][:-4] + ("AAAA" if not key["key"].endswith("AAAA") else "BBBB")

    expect_problem(await client.get(METRICS, headers={"Authorization": f"Bearer {forged}"}), 401)


# --- expiry and last use ---------------------------------------------------------------


async def test_a_key_stops_working_when_it_expires(
    client: httpx.AsyncClient, ada: dict[str, str], clock: FakeClock, expect_problem: Problem
) -> None:
    expiry = clock.now() + timedelta(minutes=10)  # within the access token's 15
    key = await create_key(client, ada, "metrics:read", expires_at=expiry.isoformat())
    assert (await client.get(METRICS, headers=bearer(key))).status_code == 200

    clock.advance(timedelta(minutes=10))

    problem = expect_problem(await client.get(METRICS, headers=bearer(key)), 401)
    assert "expired" in problem["detail"]
    listed = (await client.get(KEYS, headers=ada)).json()["items"]
    assert [item["expires_at"] for item in listed] == [expiry.isoformat().replace("+00:00", "Z")]


async def test_last_use_is_recorded_at_most_once_a_minute(
    client: httpx.AsyncClient, ada: dict[str, str], clock: FakeClock
) -> None:
    key = await create_key(client, ada, "metrics:read")
    first_use = clock.now()

    await client.get(METRICS, headers=bearer(key))
    clock.advance(timedelta(seconds=30))
    await client.get(METRICS, headers=bearer(key))
    after_half_a_minute = (await client.get(KEYS, headers=ada)).json()["items"][0]["last_used_at"]
    clock.advance(timedelta(seconds=30))
    await client.get(METRICS, headers=bearer(key))
    after_a_minute = (await client.get(KEYS, headers=ada)).json()["items"][0]["last_used_at"]

    assert after_half_a_minute == first_use.isoformat().replace("+00:00", "Z")
    assert after_a_minute == clock.now().isoformat().replace("+00:00", "Z")


# --- rate -----------------------------------------------------------------------------


@pytest.fixture
def environ(environ: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """The suite's settings, with a module's own through ``indirect`` parametrization."""
    return {**environ, **getattr(request, "param", {})}


@pytest.mark.parametrize("environ", [{"ENGAGE_KEY_RATE_PER_MINUTE": "3"}], indirect=True)
async def test_each_key_has_its_own_rate_limit(
    client: httpx.AsyncClient, ada: dict[str, str], expect_problem: Problem
) -> None:
    busy = await create_key(client, ada, "metrics:read")
    other = await create_key(client, ada, "metrics:read")

    statuses = [(await client.get(METRICS, headers=bearer(busy))).status_code for _ in range(3)]
    refused = await client.get(METRICS, headers=bearer(busy))

    assert statuses == [200, 200, 200]
    expect_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await client.get(METRICS, headers=bearer(other))).status_code == 200
    assert (await client.get(METRICS, headers=ada)).status_code == 200
