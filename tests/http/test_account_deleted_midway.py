"""An account deleted while one of its own requests runs (another tab, another
device): the request's session check passed, then the deletion committed before
its insert. The request is a 401, as the next one would be, never a 500; nothing
of it is stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

Send = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[httpx.Response]]
WRITES: dict[str, Send] = {
    "single write": lambda c, auth: c.post(
        "/api/dashboard/metrics", json={"metric_type": "page_view", "metric_value": 1}, headers=auth
    ),
    "batch write": lambda c, auth: c.post(
        "/api/dashboard/metrics/batch",
        json={"items": [{"metric_type": "page_view", "metric_value": 1}] * 3},
        headers=auth,
    ),
    "write with an Idempotency-Key": lambda c, auth: c.post(
        "/api/dashboard/metrics",
        json={"metric_type": "page_view", "metric_value": 1},
        headers={**auth, "Idempotency-Key": "k-1"},
    ),
    "second factor set-up": lambda c, auth: c.post("/api/auth/mfa/totp", headers=auth),
}


def delete_once_a_request_waits(url: str, email: str, deleting: threading.Event) -> None:
    """Delete the account, and commit once some backend waits for its row lock
    (the request's foreign-key check). A thread: the test client runs the app in
    a thread of its own and blocks the test's event loop while it does."""
    with psycopg.connect(url) as deleter, psycopg.connect(url, autocommit=True) as watcher:
        deleter.execute("DELETE FROM users WHERE email_key = %s", [email])
        deleting.set()
        for _ in range(1000):
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0]:
                break
            time.sleep(0.01)
        deleter.commit()


@pytest.mark.parametrize("kind", WRITES)
async def test_a_write_of_an_account_deleted_under_it_is_a_401_not_a_500(
    client: httpx.AsyncClient, api: Any, database_url: str, kind: str
) -> None:
    auth: dict[str, str] = await api.new_user("going@example.com")
    deleting = threading.Event()
    deletion = threading.Thread(
        target=delete_once_a_request_waits, args=(database_url, "going@example.com", deleting)
    )
    deletion.start()
    deleting.wait(timeout=30)
    answer = await WRITES[kind](client, auth)
    deletion.join(timeout=30)
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    with psycopg.connect(database_url) as conn:
        left: Any = conn.execute(
            "SELECT (SELECT count(*) FROM engagement_metrics) + (SELECT count(*) FROM user_totp)"
            " + (SELECT count(*) FROM idempotency_keys)"
        ).fetchone()
    assert left == (0,)
    assert (await client.get("/api/auth/me", headers=auth)).status_code == 401
