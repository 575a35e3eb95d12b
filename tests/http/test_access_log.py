"""The access log: one JSON line per request, with its fields in a fixed order, the
request id the response echoes, and nothing from headers, query or body."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from litestar import Litestar
from litestar.testing import AsyncTestClient

from engage_http import observability
from support.asgi import post_through_asgi

pytestmark = pytest.mark.parametrize("storage", ["memory"])

FIELDS = [
    "method",
    "path",
    "status",
    "duration_ms",
    "event",
    "request_id",
    "level",
    "logger",
    "timestamp",
]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


class Captured(io.BytesIO):
    """What configure_logging writes to stderr."""

    def configure(self, level: str) -> None:
        """configure_logging(level), writing here instead of to stderr."""
        self.text = io.TextIOWrapper(self, write_through=True)
        real, sys.stderr = sys.stderr, self.text
        try:
            observability.configure_logging(level)
        finally:
            sys.stderr = real


@pytest.fixture
def stderr() -> Iterator[Captured]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield Captured()
    structlog.reset_defaults()
    observability.reset_logging()
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(raw: Captured) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.getvalue().splitlines() if line.strip()]


async def test_a_request_logs_one_line_with_the_same_fields_in_order(
    client: AsyncTestClient[Litestar], stderr: Captured
) -> None:
    stderr.configure("INFO")
    response = await client.get(
        "/api/auth/me?secret=1",
        headers={"authorization": "Bearer not-a-token", "x-request-id": "req-42.a_b"},
    )
    assert response.status_code == 401
    [line] = [entry for entry in _lines(stderr) if entry.get("event") == "http.request"]
    assert list(line) == FIELDS
    assert line["method"] == "GET"
    assert line["path"] == "/api/auth/me"  # the path, never the query
    assert line["status"] == 401
    assert isinstance(line["duration_ms"], float | int)
    assert line["duration_ms"] >= 0
    assert line["request_id"] == "req-42.a_b" == response.headers["x-request-id"]
    assert line["level"] == "info"
    assert line["logger"] == "engage.access"
    assert TIMESTAMP.fullmatch(line["timestamp"])
    assert "not-a-token" not in stderr.getvalue().decode()


async def test_a_generated_request_id_is_the_one_logged_and_echoed(
    client: AsyncTestClient[Litestar], stderr: Captured
) -> None:
    stderr.configure("INFO")
    response = await client.get("/healthz", headers={"x-request-id": "bad id!"})
    [line] = [entry for entry in _lines(stderr) if entry.get("event") == "http.request"]
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["path"] == "/healthz"
    assert line["status"] == response.status_code


async def test_logs_written_during_a_request_carry_its_id(
    client: AsyncTestClient[Litestar], stderr: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr.configure("INFO")
    inner = observability.RequestIdMiddleware.__call__

    async def logging_inside(self: Any, scope: Any, receive: Any, send: Any) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            structlog.get_logger("engage.test").info("inside")
            logging.getLogger("engage.test.stdlib").warning("inside too")
            await original(scope, receive, send)

        original, self.app = self.app, app
        try:
            await inner(self, scope, receive, send)
        finally:
            self.app = original

    monkeypatch.setattr(observability.RequestIdMiddleware, "__call__", logging_inside)
    await client.get("/healthz", headers={"x-request-id": "abc"})
    lines = _lines(stderr)
    inside = [entry for entry in lines if entry["event"] in ("inside", "inside too")]
    assert [entry["request_id"] for entry in inside] == ["abc", "abc"]
    await client.get("/healthz", headers={"x-request-id": "def"})
    structlog.get_logger("engage.test").info("outside")
    [outside] = [entry for entry in _lines(stderr) if entry["event"] == "outside"]
    assert "request_id" not in outside


def test_a_standard_library_records_extra_fields_are_in_its_line(
    stderr: Captured,
    storage: str,  # the module's parameter; no app needed here
) -> None:
    stderr.configure("INFO")
    logging.getLogger("engage.live").warning(
        "live.connection_lost", extra={"reason": "server closed the connection"}
    )
    [line] = [entry for entry in _lines(stderr) if entry["event"] == "live.connection_lost"]
    assert line["reason"] == "server closed the connection"
    assert (line["level"], line["logger"]) == ("warning", "engage.live")


def test_the_database_pools_repeated_warnings_are_written_once_a_minute(
    stderr: Captured,
    storage: str,  # the module's parameter; no app needed here
) -> None:
    stderr.configure("INFO")
    now = [0.0]
    [handler] = logging.getLogger().handlers
    assert [type(f) for f in handler.filters] == [observability.RepeatedWarnings]
    handler.filters[:] = [observability.RepeatedWarnings(every=60, clock=lambda: now[0])]
    pool = logging.getLogger("psycopg.pool")

    for second in range(0, 70, 2):  # an outage: the pool fails to connect every 2 s
        now[0] = second
        pool.warning("error connecting in %r: %s", "engage", "connection refused")
        pool.warning("reconnection attempt in pool %r failed after %s sec", "engage", 4.0)
    pool.error("an error is always written")

    lines = [entry for entry in _lines(stderr) if entry["logger"] == "psycopg.pool"]
    assert [(line["event"].split(" ")[0], line.get("repeated")) for line in lines] == [
        ("error", None),
        ("reconnection", None),
        ("error", 29),  # seconds 2 to 58 were left out
        ("reconnection", 29),
        ("an", None),
    ]


async def test_above_info_no_access_line_is_written(
    client: AsyncTestClient[Litestar], stderr: Captured
) -> None:
    stderr.configure("WARNING")
    assert (await client.get("/healthz")).status_code == 200
    assert [entry for entry in _lines(stderr) if entry.get("event") == "http.request"] == []


async def test_a_request_no_route_takes_is_logged_with_the_id_it_is_answered_with(
    client: AsyncTestClient[Litestar], stderr: Captured
) -> None:
    stderr.configure("INFO")
    unknown = await client.get("/no/such/page", headers={"x-request-id": "scan-1"})
    wrong_method = await client.put("/healthz")

    lines = [entry for entry in _lines(stderr) if entry.get("event") == "http.request"]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/no/such/page", 404),
        ("PUT", "/healthz", 405),
    ]
    assert (unknown.status_code, wrong_method.status_code) == (404, 405)
    assert lines[0]["request_id"] == "scan-1" == unknown.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", lines[1]["request_id"])
    assert lines[1]["request_id"] == wrong_method.headers["x-request-id"]


def post_and_hang_up(
    client: AsyncTestClient[Litestar], path: str, framing: tuple[bytes, bytes]
) -> list[dict[str, Any]]:
    """POST the start of a JSON body, straight through ASGI; then the connection
    closes (``http.disconnect``, as granian ends a body that ends early). What the
    app sent."""
    incoming = [
        {"type": "http.request", "body": b'{"email":', "more_body": True},
        {"type": "http.disconnect"},
    ]
    return post_through_asgi(
        client, path, incoming, [(b"content-type", b"application/json"), framing]
    )


def _requests_total(text: str, **labels: str) -> float:
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("engage_requests_total{")
        and wanted <= set(line.split("{", 1)[1].split("}", 1)[0].split(","))
    )


async def test_a_client_that_hangs_up_mid_body_is_logged_and_counted_as_499_and_sent_nothing(
    client: AsyncTestClient[Litestar], stderr: Captured
) -> None:
    before = (await client.get("/metrics")).text
    stderr.configure("INFO")

    sent = post_and_hang_up(client, "/api/auth/signup", (b"content-length", b"100"))

    assert sent == []
    [line] = [entry for entry in _lines(stderr) if entry.get("event") == "http.request"]
    assert (line["path"], line["status"]) == ("/api/auth/signup", 499)
    after = (await client.get("/metrics")).text
    signup = {"method": "POST", "path": "/api/auth/signup"}
    for status, grown in [("499", 1), ("500", 0)]:
        counted = _requests_total(after, **signup, status_code=status)
        assert counted - _requests_total(before, **signup, status_code=status) == grown, status


async def test_a_chunked_body_that_ends_early_is_a_400_problem_not_a_500(
    client: AsyncTestClient[Litestar], stderr: Captured
) -> None:
    stderr.configure("INFO")

    sent = post_and_hang_up(client, "/api/auth/signup", (b"transfer-encoding", b"chunked"))

    [start] = [message for message in sent if message["type"] == "http.response.start"]
    assert start["status"] == 400
    assert (b"content-type", b"application/problem+json") in start["headers"]
    body = json.loads(b"".join(message.get("body", b"") for message in sent[1:]))
    assert body["status"] == 400
    assert "chunked" in body["detail"]
    [line] = [entry for entry in _lines(stderr) if entry.get("event") == "http.request"]
    assert line["status"] == 400
