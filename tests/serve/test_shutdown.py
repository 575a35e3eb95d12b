"""Stopping `engage serve` with live streams open: the streams end at once (an `end`
event, then the response closes), requests in flight still finish, and the process
exits in seconds, not at granian's 30 s kill timeout.

The bound asserted on the exit is a behaviour (the streams did not hold the
workers open until they were killed), far above what it takes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from support.cli import JWT_SECRET
from support.serve import running_server

STREAM = "/api/dashboard/stream"
PASSWORD = "password-123"
# Well under granian's workers_kill_timeout (30 s): the streams did not hold the workers.
EXITS_WITHIN = 10.0


@pytest.fixture
def server(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": JWT_SECRET,
        "ENGAGE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "ENGAGE_BCRYPT_ROUNDS": "12",  # a signup keeps a worker busy for a while
        "ENGAGE_COOKIE_SECURE": "false",
    }
    with running_server(env, workers=2) as running:
        yield running


async def read_stream(
    base: str, headers: dict[str, str], opened: asyncio.Event
) -> list[ServerSentEvent]:
    """Every event of one stream, until the server closes it."""
    events = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=60)) as client,
        aconnect_sse(client, "GET", STREAM, headers=headers) as source,
    ):
        assert source.response.status_code == 200
        async for event in source.aiter_sse():
            events.append(event)
            opened.set()
    return events


async def test_sigterm_ends_open_streams_and_the_server_exits_in_seconds(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    process, base = server
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        body = {"email": f"streams-{os.getpid()}@example.com", "password": PASSWORD}
        assert (await http.post("/api/auth/signup", json=body)).status_code == 201
        token = (await http.post("/api/auth/token", json=body)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        # Enough streams that both workers hold some.
        opened = [asyncio.Event() for _ in range(4)]
        readers = [asyncio.create_task(read_stream(base, auth, each)) for each in opened]
        async with asyncio.timeout(30):
            for each in opened:
                await each.wait()
        # A request in flight when the signal comes (a bcrypt hash at cost 12).
        late = {"email": f"in-flight-{os.getpid()}@example.com", "password": PASSWORD}
        signing_up = asyncio.create_task(http.post("/api/auth/signup", json=late))
        await asyncio.sleep(0.1)

        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        async with asyncio.timeout(EXITS_WITHIN):
            streams = await asyncio.gather(*readers)
            signed_up = await signing_up
        returncode = await asyncio.to_thread(process.wait, EXITS_WITHIN)
        took = time.monotonic() - signalled

    assert returncode == 0
    assert took < EXITS_WITHIN
    assert signed_up.status_code == 201, signed_up.text
    for events in streams:
        assert events[0].event == "position"
        # The last event says why; then the server closed the response (the reader returned).
        assert (events[-1].event, json.loads(events[-1].data)) == (
            "end",
            {"reason": "shutting down"},
        )
