"""An authenticated read or write is one round trip to PostgreSQL: the session's
check travels with the request's own statement.

Every connection the app opens is traced by libpq (``PQtrace``): each message the
client sends (F) and receives (B), in order. A round trip is the client sending
statements and then waiting for the server's answer, which it does after each
Sync (or a Flush): an exchange. A request's exchanges are those since the mark
that run its statements (the mail sender may use the same connections meanwhile).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from attrs import frozen
from psycopg import pq

from engage_http.cookies import ACCESS_COOKIE

# A statement's text runs to the end of the line (its first line, if it has several).
_PARSE = re.compile(r'\tParse\t "([^"]*)" "(.*)')
_QUERY = re.compile(r'\tQuery\t "(.*)')
_BIND = re.compile(r'\tBind\t "[^"]*" "([^"]*)"')


@frozen
class Exchange:
    """Statements a connection sent (their text, prepared ones too) up to the Sync
    (or the Flush) after which it waited for the server's answer."""

    statements: tuple[str, ...]


def exchanges(lines: list[str], since: int) -> list[Exchange]:
    """The exchanges of a trace whose first message is at line ``since`` or later."""
    prepared: dict[str, str] = {}
    found: list[Exchange] = []
    statements: list[str] = []
    start = None
    for number, line in enumerate(lines):
        query = None
        if not line.startswith("F"):
            continue  # the server's answers may come before the Sync: they do not count
        if parse := _PARSE.search(line):
            prepared[parse[1]] = parse[2]
        elif bind := _BIND.search(line):
            statements.append(prepared[bind[1]])
        elif query := _QUERY.search(line):
            statements.append(query[1])
        start = number if start is None else start
        # The client waits after a Sync, a simple Query, or a Flush when it did not
        # just sync.
        if "\tSync" in line or query or ("\tFlush" in line and statements):
            if start >= since:
                found.append(Exchange(tuple(statements)))
            statements, start = [], None
        elif "\tFlush" in line:
            start = None
    return found


class Traces:
    """libpq traces of every connection opened while the fixture is on."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.followed: list[tuple[psycopg.AsyncConnection[Any], Path, int]] = []
        self.marks: dict[Path, int] = {}

    def follow(self, conn: psycopg.AsyncConnection[Any]) -> None:
        path = self.root / f"connection-{len(self.followed)}.trace"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.followed.append((conn, path, fd))
        self._trace(conn, fd)

    @staticmethod
    def _trace(conn: psycopg.AsyncConnection[Any], fd: int) -> None:
        conn.pgconn.trace(fd)
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def _lines(self, path: Path) -> list[str]:
        return path.read_text("utf-8", "replace").splitlines()

    def _flush(self) -> None:
        # libpq writes a trace through stdio; PQuntrace flushes it.
        for conn, _, fd in self.followed:
            if not conn.closed:
                conn.pgconn.untrace()
                self._trace(conn, fd)

    def mark(self) -> None:
        self._flush()
        self.marks = {path: len(self._lines(path)) for _, path, _ in self.followed}

    def since_mark(self, *tables: str) -> list[Exchange]:
        """The exchanges since ``mark``, on every connection, that run a statement
        naming one of ``tables`` (others, such as the mail sender's, are left out)."""
        self._flush()
        return [
            exchange
            for _, path, _ in self.followed
            for exchange in exchanges(self._lines(path), self.marks.get(path, 0))
            if any(table in text for text in exchange.statements for table in tables)
        ]

    def close(self) -> None:
        for conn, _, fd in self.followed:
            if not conn.closed:
                conn.pgconn.untrace()
            os.close(fd)


@pytest.fixture(autouse=True)
def traces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Traces]:
    """Set up before the app opens its pool, so that every connection is traced."""
    traces = Traces(tmp_path)
    connect = psycopg.AsyncConnection.connect.__func__  # type: ignore[attr-defined]

    async def traced(cls: type[psycopg.AsyncConnection[Any]], *args: Any, **kwargs: Any) -> Any:
        conn = await connect(cls, *args, **kwargs)
        traces.follow(conn)
        return conn

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", classmethod(traced))
    yield traces
    traces.close()


def _one_trip(traces: Traces) -> Exchange:
    """The one round trip in which the request checked its session and did its work."""
    (exchange,) = traces.since_mark("sessions", "engagement_metrics")
    assert len(exchange.statements) == 2, exchange
    assert "engage_session_check" in exchange.statements[0], exchange
    return exchange


async def test_a_read_with_a_bearer_token_is_one_round_trip(api, client, traces) -> None:
    auth = await api.new_user("ada@example.com")
    await api.record(auth, metric_type="page_view", metric_value=1)

    for _ in range(7):  # also once psycopg prepares the statements (after 5)
        traces.mark()
        response = await client.get("/api/dashboard/metrics", headers=auth)
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == 1
        assert "FROM engagement_metrics" in _one_trip(traces).statements[1]


async def test_a_read_with_the_access_cookie_is_one_round_trip(api, client, traces) -> None:
    await api.sign_up("ada@example.com")
    await api.log_in("ada@example.com")
    assert client.cookies.get(ACCESS_COOKIE)

    traces.mark()
    response = await client.get("/api/dashboard/metrics")

    assert response.status_code == 200, response.text
    assert "FROM engagement_metrics" in _one_trip(traces).statements[1]


async def test_a_single_write_is_one_round_trip(api, client, traces, db) -> None:
    auth = await api.new_user("ada@example.com")

    for value in range(7):
        traces.mark()
        response = await client.post(
            "/api/dashboard/metrics",
            json={"metric_type": "page_view", "metric_value": value},
            headers=auth,
        )
        assert response.status_code == 201, response.text
        assert "INSERT INTO engagement_metrics" in _one_trip(traces).statements[1]

    assert db("SELECT count(*) FROM engagement_metrics") == [(7,)]


async def test_a_batch_write_is_one_round_trip(api, client, traces, db) -> None:
    auth = await api.new_user("ada@example.com")
    batch = {"items": [{"metric_type": "page_view", "metric_value": v} for v in range(3)]}

    for _ in range(7):
        traces.mark()
        response = await client.post("/api/dashboard/metrics/batch", json=batch, headers=auth)
        assert response.status_code == 201, response.text
        assert response.json() == {"inserted": 3}
        assert "INSERT INTO engagement_metrics" in _one_trip(traces).statements[1]

    assert db("SELECT count(*) FROM engagement_metrics") == [(21,)]


async def test_an_idempotent_write_claims_its_key_in_the_session_check_s_round_trip(
    api, client, traces, db
) -> None:
    auth = await api.new_user("ada@example.com")
    metric = {"metric_type": "page_view", "metric_value": 1}

    traces.mark()
    response = await client.post(
        "/api/dashboard/metrics", json=metric, headers={**auth, "Idempotency-Key": "k-1"}
    )

    assert response.status_code == 201, response.text
    trips = traces.since_mark("sessions", "engagement_metrics", "idempotency_keys")
    (claim,) = [e for e in trips if any("INTO idempotency_keys" in t for t in e.statements)]
    assert len(claim.statements) == 2, claim
    assert "engage_session_check" in claim.statements[0]
    # Then the insert and the recorded answer, committed together, the session
    # not checked again.
    assert not any("engage_session_check" in t for e in trips if e != claim for t in e.statements)
    assert any("INSERT INTO engagement_metrics" in t for e in trips for t in e.statements)
    assert db("SELECT count(*) FROM engagement_metrics") == [(1,)]


async def test_a_session_ended_elsewhere_is_refused_in_the_write_s_one_round_trip(
    api, client, traces, db, expect_problem
) -> None:
    auth = await api.new_user("ada@example.com")
    await api.record(auth, metric_type="page_view", metric_value=1)
    # Another worker's logout: this process's cache knows nothing of it.
    ended = db("UPDATE sessions SET ended_at = now(), end_reason = 'logged out' RETURNING id")
    assert len(ended) == 1

    traces.mark()
    response = await client.post(
        "/api/dashboard/metrics", json={"metric_type": "page_view", "metric_value": 2}, headers=auth
    )

    expect_problem(response, 401)
    assert "INSERT INTO engagement_metrics" in _one_trip(traces).statements[1]
    assert db("SELECT metric_value FROM engagement_metrics") == [(1,)]
    # Now this process knows: the next request is refused without a round trip.
    traces.mark()
    expect_problem(await client.get("/api/dashboard/metrics", headers=auth), 401)
    assert traces.since_mark("sessions", "engagement_metrics") == []


# --- requests authenticated by an API key ----------------------------------------


async def _key(client, auth, *scopes: str) -> dict[str, str]:
    response = await client.post(
        "/api/keys", json={"name": "sensor", "scopes": scopes}, headers=auth
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def _one_key_trip(traces: Traces) -> Exchange:
    """The one round trip in which the request checked its key, counted its use
    and did its work."""
    (exchange,) = traces.since_mark("api_keys", "rate_limits", "engagement_metrics")
    assert len(exchange.statements) == 2, exchange
    assert "engage_key_check" in exchange.statements[0], exchange
    return exchange


async def test_a_read_with_an_api_key_is_one_round_trip(api, client, traces, db) -> None:
    auth = await api.new_user("ada@example.com")
    await api.record(auth, metric_type="page_view", metric_value=1)
    key = await _key(client, auth, "metrics:read")
    # The first use reads the key's owner, and notes its first use.
    assert (await client.get("/api/dashboard/metrics", headers=key)).status_code == 200

    for _ in range(7):  # also once psycopg prepares the statements (after 5)
        traces.mark()
        response = await client.get("/api/dashboard/metrics", headers=key)
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == 1
        assert "FROM engagement_metrics" in _one_key_trip(traces).statements[1]

    # Each use counted in the key's limit: 8 of them.
    [(events,)] = db("SELECT cardinality(events) FROM rate_limits WHERE key LIKE 'api-key:%%'")
    assert events == 8


async def test_a_single_write_with_an_api_key_is_one_round_trip(api, client, traces, db) -> None:
    auth = await api.new_user("ada@example.com")
    key = await _key(client, auth, "metrics:write")
    metric = {"metric_type": "page_view", "metric_value": 0}
    assert (
        await client.post("/api/dashboard/metrics", json=metric, headers=key)
    ).status_code == 201

    for value in range(1, 8):
        traces.mark()
        response = await client.post(
            "/api/dashboard/metrics",
            json={"metric_type": "page_view", "metric_value": value},
            headers=key,
        )
        assert response.status_code == 201, response.text
        assert "INSERT INTO engagement_metrics" in _one_key_trip(traces).statements[1]

    assert db("SELECT count(*) FROM engagement_metrics") == [(8,)]
    [(events,)] = db("SELECT cardinality(events) FROM rate_limits WHERE key LIKE 'api-key:%%'")
    assert events == 8


async def test_a_batch_write_with_an_api_key_is_one_round_trip(api, client, traces, db) -> None:
    auth = await api.new_user("ada@example.com")
    key = await _key(client, auth, "metrics:write")
    batch = {"items": [{"metric_type": "page_view", "metric_value": v} for v in range(3)]}
    assert (
        await client.post("/api/dashboard/metrics/batch", json=batch, headers=key)
    ).status_code == 201

    traces.mark()
    response = await client.post("/api/dashboard/metrics/batch", json=batch, headers=key)

    assert response.status_code == 201, response.text
    assert "INSERT INTO engagement_metrics" in _one_key_trip(traces).statements[1]
    assert db("SELECT count(*) FROM engagement_metrics") == [(6,)]


async def test_a_key_revoked_elsewhere_is_refused_in_the_write_s_one_round_trip(
    api, client, traces, db, expect_problem
) -> None:
    auth = await api.new_user("ada@example.com")
    key = await _key(client, auth, "metrics:write")
    metric = {"metric_type": "page_view", "metric_value": 1}
    assert (
        await client.post("/api/dashboard/metrics", json=metric, headers=key)
    ).status_code == 201
    # Another worker's revocation (or the CLI's).
    assert len(db("UPDATE api_keys SET revoked_at = now() RETURNING id")) == 1

    traces.mark()
    response = await client.post(
        "/api/dashboard/metrics", json={"metric_type": "page_view", "metric_value": 2}, headers=key
    )

    problem = expect_problem(response, 401)
    assert problem["detail"] == "this API key has been revoked"
    assert "INSERT INTO engagement_metrics" in _one_key_trip(traces).statements[1]
    assert db("SELECT metric_value FROM engagement_metrics") == [(1,)]
    # Not counted: one use, the first.
    [(events,)] = db("SELECT cardinality(events) FROM rate_limits WHERE key LIKE 'api-key:%%'")
    assert events == 1


async def test_a_wrong_secret_for_a_known_key_costs_no_round_trip(
    api, client, traces, db, expect_problem
) -> None:
    auth = await api.new_user("ada@example.com")
    key = await _key(client, auth, "metrics:read")
    assert (await client.get("/api/dashboard/metrics", headers=key)).status_code == 200
    forged = key["Authorization"][:-4] + (
        "AAAA" if not key["Authorization"].endswith("AAAA") else "BBBB"
    )

    traces.mark()
    expect_problem(
        await client.get("/api/dashboard/metrics", headers={"Authorization": forged}), 401
    )

    assert traces.since_mark("api_keys", "rate_limits", "engagement_metrics") == []
    [(events,)] = db("SELECT cardinality(events) FROM rate_limits WHERE key LIKE 'api-key:%%'")
    assert events == 1
