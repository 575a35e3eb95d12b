"""A live stream sends its events outside the middleware chain (detached.py), yet it is
logged, counted and given its headers as any request is: the access log line and the
route's counters when it ends, the in-progress gauge while it is open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.types import Receive, Scope, Send
from tests.http.conftest import TRUSTED_ORIGIN, Api
from tests.http.test_ops import sample

from engage_http.detached import defer, detach, run_detached

WAIT = 5.0  # how long a test waits for what must happen (it happens in milliseconds)
STREAM = "/api/dashboard/stream"
ROUTE = {"method": "GET", "path": STREAM}


@pytest.fixture
def storage() -> str:
    return "memory"


class Connection:
    """One client of the raw ASGI app: it leaves when told to."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.gone = asyncio.get_running_loop().create_future()
        self.first_event = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.first_event.set()

    def head(self) -> dict[str, str]:
        start = self.messages[0]
        assert start["type"] == "http.response.start"
        return {k.decode().lower(): v.decode() for k, v in start["headers"]}


def stream_scope(auth: dict[str, str], request_id: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": STREAM,
        "raw_path": STREAM.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"accept", b"text/event-stream"),
            (b"authorization", auth["Authorization"].encode()),
            (b"x-request-id", request_id.encode()),
            (b"origin", TRUSTED_ORIGIN.encode()),
        ],
        "state": {},
    }


def stream_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == "http.request" and line["path"] == STREAM]


async def test_a_stream_is_logged_and_counted_when_it_ends(
    app: Litestar, client: AsyncTestClient[Litestar], api: Api
) -> None:
    auth = await api.new_user("streamer@example.com")
    before = (await client.get("/metrics")).text
    connection = Connection()
    merge = structlog.contextvars.merge_contextvars
    with structlog.testing.capture_logs(processors=[merge]) as logs:
        scope = stream_scope(auth, "stream-request-1")
        served = asyncio.create_task(app(scope, connection.receive, connection.send))  # type: ignore[arg-type]
        await asyncio.wait_for(connection.first_event.wait(), WAIT)
        during = (await client.get("/metrics")).text
        logged_during = stream_lines(logs)
        connection.gone.set_result(None)
        await asyncio.wait_for(served, WAIT)
    after = (await client.get("/metrics")).text

    head = connection.head()
    assert connection.messages[0]["status"] == 200
    assert head["content-type"].startswith("text/event-stream")
    assert head["x-request-id"] == "stream-request-1"
    assert head["x-content-type-options"] == "nosniff"
    assert head["cache-control"] == "no-store"
    assert head["access-control-allow-origin"] == TRUSTED_ORIGIN
    assert b"event: position" in connection.messages[1]["body"]

    # While it is open: in progress, neither logged nor counted as finished yet.
    assert logged_during == []
    assert sample(during, "engage_requests_in_progress", **ROUTE) == 1
    finished = {**ROUTE, "status_code": "200"}
    for name in ("engage_requests_total", "engage_request_duration_seconds_count"):
        assert sample(during, name, **finished) == sample(before, name, **finished), name
    # Once it ended: one line, as for any request, and counted once.
    [line] = stream_lines(logs)
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert line["request_id"] == "stream-request-1"
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert set(line) == {
        "event",
        "log_level",
        "method",
        "path",
        "status",
        "duration_ms",
        "request_id",
    }
    assert sample(after, "engage_requests_in_progress", **ROUTE) == 0
    for name in ("engage_requests_total", "engage_request_duration_seconds_count"):
        assert sample(after, name, **finished) == sample(before, name, **finished) + 1, name
    # The request id was bound for this request only.
    assert all(
        entry.get("request_id") != "stream-request-1"
        for entry in logs
        if entry.get("path") != STREAM
    )


async def test_a_refused_stream_is_logged_and_counted_at_once(
    client: AsyncTestClient[Litestar],
) -> None:
    before = (await client.get("/metrics")).text
    merge = structlog.contextvars.merge_contextvars
    with structlog.testing.capture_logs(processors=[merge]) as logs:
        response = await client.get(STREAM)
    after = (await client.get("/metrics")).text

    assert response.status_code == 401
    [line] = stream_lines(logs)
    assert line["status"] == 401
    assert line["request_id"] == response.headers["x-request-id"]
    refused = {**ROUTE, "status_code": "401"}
    assert sample(after, "engage_requests_total", **refused) == (
        sample(before, "engage_requests_total", **refused) + 1
    )
    assert sample(after, "engage_requests_in_progress", **ROUTE) == 0


# --- detached.py on its own ----------------------------------------------------------


class Rest:
    def __init__(self, done: list[str]) -> None:
        self.done = done

    async def resume(self, receive: Receive, send: Send) -> None:
        self.done.append("resumed")
        await send({"type": "http.response.body", "body": b"rest", "more_body": False})

    async def abandon(self) -> None:
        self.done.append("abandoned")


def chain(done: list[str], *, fail: bool = False) -> Callable[[Scope, Receive, Send], Any]:
    """A middleware that defers its finish, around an app that detaches ``Rest``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            done.append(f"detached: {detach(scope, Rest(done))}")
            if fail:
                raise RuntimeError("the chain failed")
        finally:
            if not defer(scope, done.append, "finished"):
                done.append("finished in the chain")

    return app


def http_scope() -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/", "headers": []}


async def nothing() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def test_the_rest_runs_after_the_chain_then_what_it_deferred() -> None:
    done: list[str] = []
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await run_detached(chain(done), http_scope(), nothing, send)  # type: ignore[arg-type]

    assert done == ["detached: True", "resumed", "finished"]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


async def test_without_a_runner_outside_nothing_is_detached() -> None:
    done: list[str] = []

    async def send(message: Any) -> None:
        return None

    await chain(done)(http_scope(), nothing, send)

    assert done == ["detached: False", "finished in the chain"]


async def test_a_chain_that_fails_after_detaching_lets_the_rest_go() -> None:
    done: list[str] = []

    async def send(message: Any) -> None:
        return None

    with pytest.raises(RuntimeError, match="the chain failed"):
        await run_detached(chain(done, fail=True), http_scope(), nothing, send)  # type: ignore[arg-type]

    assert done == ["detached: True", "abandoned", "finished"]


async def test_every_deferred_finish_runs_even_when_one_raises() -> None:
    done: list[str] = []

    def broken() -> None:
        raise ValueError("a finisher failed")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert detach(scope, Rest(done))
        assert defer(scope, broken)
        assert defer(scope, done.append, "the outer one finished")

    async def send(message: Any) -> None:
        return None

    with pytest.raises(ValueError, match="a finisher failed"):
        await run_detached(app, http_scope(), nothing, send)  # type: ignore[arg-type]

    assert done == ["resumed", "the outer one finished"]
