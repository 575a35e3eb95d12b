"""`engage serve --workers 2` without Redis: a session ended through one worker is
refused by both at once, and failed logins for an email and the requests of an API
key are each one count across both (kept in PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest

from support.serve import running_server, serve_env

PASSWORD = "correct horse battery staple"
# Each request on a new connection, so the kernel spreads them over both workers.
ROUNDS = 24
KEY_RATE = 10


@pytest.fixture(scope="module")
def server(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with psycopg.connect(pg_url) as conn:
        conn.execute("TRUNCATE users, rate_limits CASCADE")
    env = serve_env(pg_url, tmp_path_factory.mktemp("engage"))
    env.pop("ENGAGE_REDIS_URL", None)
    env["ENGAGE_KEY_RATE_PER_MINUTE"] = str(KEY_RATE)
    with running_server(env, workers=2) as (_, base):
        yield base


def statuses(server: str, method: str, path: str, **request: object) -> list[int]:
    found = []
    for _ in range(ROUNDS):
        with httpx.Client(base_url=server) as client:
            found.append(client.request(method, path, **request).status_code)  # type: ignore[arg-type]
    return found


def test_a_session_ended_through_one_worker_is_refused_by_both_at_once(server: str) -> None:
    credentials = {"email": "ada@example.com", "password": PASSWORD}
    with httpx.Client(base_url=server) as client:
        assert client.post("/api/auth/signup", json=credentials).status_code == 201
        phone = client.post("/api/auth/token", json=credentials).json()["access_token"]
        laptop = client.post("/api/auth/token", json=credentials).json()["access_token"]
    as_phone = {"Authorization": f"Bearer {phone}"}
    as_laptop = {"Authorization": f"Bearer {laptop}"}
    assert statuses(server, "GET", "/api/auth/me", headers=as_phone) == [200] * ROUNDS
    with httpx.Client(base_url=server, headers=as_laptop) as client:
        listed = client.get("/api/auth/sessions").json()["items"]
        phone_id = next(item["id"] for item in listed if not item["current"])
        assert client.delete(f"/api/auth/sessions/{phone_id}").status_code == 204

    assert statuses(server, "GET", "/api/auth/me", headers=as_phone) == [401] * ROUNDS
    assert statuses(server, "GET", "/api/auth/me", headers=as_laptop) == [200] * ROUNDS


def test_failed_logins_for_one_email_are_one_count_across_the_workers(server: str) -> None:
    credentials = {"email": "bob@example.com", "password": PASSWORD}
    with httpx.Client(base_url=server) as client:
        assert client.post("/api/auth/signup", json=credentials).status_code == 201
    wrong = {"email": "bob@example.com", "password": "not the password"}

    found = statuses(server, "POST", "/api/auth/login", json=wrong)

    assert found == [401] * 5 + [429] * (ROUNDS - 5)


def test_the_requests_of_an_api_key_are_one_count_across_the_workers(server: str) -> None:
    credentials = {"email": "cleo@example.com", "password": PASSWORD}
    with httpx.Client(base_url=server) as client:
        assert client.post("/api/auth/signup", json=credentials).status_code == 201
        token = client.post("/api/auth/token", json=credentials).json()["access_token"]
        created = client.post(
            "/api/keys",
            json={"name": "sensor", "scopes": ["metrics:read"]},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert created.status_code == 201, created.text
    as_key = {"Authorization": f"Bearer {created.json()['key']}"}

    found = statuses(server, "GET", "/api/dashboard/metrics", headers=as_key)

    assert found == [200] * KEY_RATE + [429] * (ROUNDS - KEY_RATE)
