"""API keys and the live stream over a real `engage serve --workers 2`, with real clients.

Streams are read with httpx-sse; writes come through the API (landing on either
worker), from another process (`engage metrics backfill`) or straight from
SQL. Nothing here is timed: each wait has a generous bound for what happens in
milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from support.cli import JWT_SECRET, engage
from support.serve import running_server

WAIT = 15.0
PASSWORD = "password-123"
STREAM = "/api/dashboard/stream"
METRICS = "/api/dashboard/metrics"


@pytest.fixture(scope="module")
def env(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": JWT_SECRET,
        "ENGAGE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "ENGAGE_BCRYPT_ROUNDS": "4",
        "ENGAGE_COOKIE_SECURE": "false",
        # Every test signs users up from one address, against one limit for both workers.
        "ENGAGE_AUTH_RATE_PER_MINUTE": "100000",
    }


@pytest.fixture(scope="module")
def base(env: dict[str, str]) -> Iterator[str]:
    with running_server(env, workers=2) as (_, url):
        yield url


@pytest.fixture
async def http(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, timeout=WAIT) as client:
        yield client


_users = iter(range(10_000))


async def new_user(http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """A fresh user's email and bearer header."""
    email = f"user{next(_users)}-{os.getpid()}@example.com"
    body = {"email": email, "password": PASSWORD}
    assert (await http.post("/api/auth/signup", json=body)).status_code == 201
    token = (await http.post("/api/auth/token", json=body)).json()["access_token"]
    return email, {"Authorization": f"Bearer {token}"}


async def new_key(http: httpx.AsyncClient, auth: dict[str, str], *scopes: str) -> dict[str, Any]:
    response = await http.post(
        "/api/keys", json={"name": "device", "scopes": list(scopes)}, headers=auth
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return {**created, "auth": {"Authorization": f"Bearer {created['key']}"}}


async def record(http: httpx.AsyncClient, auth: dict[str, str], metric_type: str = "steps") -> int:
    response = await http.post(
        METRICS, json={"metric_type": metric_type, "metric_value": 1}, headers=auth
    )
    assert response.status_code == 201, response.text
    metric_id: int = response.json()["id"]
    return metric_id


class Listener:
    """One open stream, read in a task of its own into ``events``."""

    def __init__(self) -> None:
        self.events: list[ServerSentEvent] = []
        self.status: int | None = None
        self.closed = asyncio.Event()
        self._opened = asyncio.Event()
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, base: str, headers: dict[str, str], params: dict[str, str] | None = None
    ) -> Listener:
        listener = await cls.try_open(base, headers, params)
        assert listener is not None, "the stream was refused (429)"
        return listener

    @classmethod
    async def try_open(
        cls, base: str, headers: dict[str, str], params: dict[str, str] | None = None
    ) -> Listener | None:
        """An open stream, or None when it was refused with a 429."""
        listener = cls()
        listener.task = asyncio.get_running_loop().create_task(
            listener._read(base, headers, params or {})
        )
        async with asyncio.timeout(WAIT):
            await listener._opened.wait()
        if listener.status == 429:
            return None
        assert listener.status == 200, listener.status
        # The stream has told its position: everything written from here on is "new".
        await listener.until(lambda events: any(e.id for e in events))
        return listener

    async def _read(self, base: str, headers: dict[str, str], params: dict[str, str]) -> None:
        try:
            async with (
                httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(WAIT, read=60)) as client,
                aconnect_sse(client, "GET", STREAM, headers=headers, params=params) as source,
            ):
                self.status = source.response.status_code
                self._opened.set()
                if self.status != 200:
                    return
                async for event in source.aiter_sse():
                    self.events.append(event)
                    self._changed.set()
        finally:
            self._opened.set()
            self.closed.set()
            self._changed.set()

    def metric_ids(self) -> list[int]:
        return [int(e.id) for e in self.events if e.event == "metric"]

    @property
    def last_event_id(self) -> str:
        return next(e.id for e in reversed(self.events) if e.id)

    async def until(self, done: Any) -> None:
        async with asyncio.timeout(WAIT):
            while not done(self.events):
                self._changed.clear()
                if self.closed.is_set():
                    assert done(self.events), self.events
                await self._changed.wait()

    async def has_ids(self, ids: list[int]) -> None:
        await self.until(lambda events: set(ids) <= set(self.metric_ids()))

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


# --- API keys across two workers ---------------------------------------------------------


async def test_a_revoked_key_is_refused_at_once_by_every_worker(http: httpx.AsyncClient) -> None:
    _, auth = await new_user(http)
    key = await new_key(http, auth, "metrics:write", "metrics:read")
    # Enough requests that both workers have let the key through.
    for _ in range(10):
        assert (await http.get(METRICS, headers=key["auth"])).status_code == 200

    assert (await http.delete(f"/api/keys/{key['id']}", headers=auth)).status_code == 204

    statuses = [(await http.get(METRICS, headers=key["auth"])).status_code for _ in range(20)]
    assert statuses == [401] * 20


async def test_the_cli_creates_lists_and_revokes_keys(
    http: httpx.AsyncClient, env: dict[str, str]
) -> None:
    email, auth = await new_user(http)

    created = engage(env, "key", "create", email, "--name", "script", "--scope", "metrics:write")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    bearer = {"Authorization": f"Bearer {token}"}
    metric_id = await record(http, bearer)
    listed = engage(env, "key", "list", email, "--json")
    [shown] = json.loads(listed.stdout)
    assert (shown["email"], shown["name"], shown["scopes"]) == (email, "script", ["metrics:write"])
    assert token not in listed.stdout
    revoked = engage(env, "key", "revoke", shown["id"])

    assert revoked.returncode == 0, revoked.stderr
    refused = await http.post(METRICS, json={"metric_type": "x", "metric_value": 1}, headers=bearer)
    assert refused.status_code == 401
    listed = (await http.get(METRICS, headers=auth)).json()["items"]
    assert [item["id"] for item in listed] == [metric_id]
    again = engage(env, "key", "revoke", shown["id"])
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr.startswith("engage: error: no API key with id")


# --- the stream ------------------------------------------------------------------------


async def test_a_stream_shows_each_new_metric_from_either_worker(
    http: httpx.AsyncClient, base: str
) -> None:
    _, auth = await new_user(http)
    reader = await new_key(http, auth, "metrics:read")
    writer = await new_key(http, auth, "metrics:write")
    listener = await Listener.open(base, reader["auth"])

    ids = [await record(http, writer["auth"]) for _ in range(6)]
    await listener.has_ids(ids)

    assert listener.metric_ids() == ids
    first = next(e for e in listener.events if e.event == "metric")
    listed = (await http.get(METRICS, headers=auth, params={"limit": 500})).json()["items"]
    assert json.loads(first.data) == next(m for m in listed if m["id"] == ids[0])
    await listener.stop()


async def test_a_stream_filters_by_metric_type(http: httpx.AsyncClient, base: str) -> None:
    _, auth = await new_user(http)
    listener = await Listener.open(base, auth, {"metric_type": "clicks"})

    await record(http, auth, "steps")
    click = await record(http, auth, "clicks")
    await record(http, auth, "steps")
    last = await record(http, auth, "clicks")
    await listener.has_ids([click, last])

    assert listener.metric_ids() == [click, last]
    await listener.stop()


async def test_a_backfill_from_another_process_reaches_the_stream(
    http: httpx.AsyncClient, base: str, env: dict[str, str], tmp_path: Path
) -> None:
    email, auth = await new_user(http)
    listener = await Listener.open(base, auth)
    start = datetime.now(UTC) - timedelta(days=3)
    small = tmp_path / "small.csv"
    small.write_text(
        "metric_type,metric_value,recorded_at\n"
        + "".join(f"views,{i},{(start + timedelta(minutes=i)).isoformat()}\n" for i in range(5))
    )
    large = tmp_path / "large.csv"
    large.write_text(
        "metric_type,metric_value,recorded_at\n"
        + "".join(f"load,{i},{(start + timedelta(seconds=i)).isoformat()}\n" for i in range(1500))
    )

    loaded = engage(env, "metrics", "backfill", str(small), "--user", email)
    assert loaded.returncode == 0, loaded.stderr
    await listener.until(lambda events: len(listener.metric_ids()) == 5)
    loaded = engage(env, "metrics", "backfill", str(large), "--user", email)
    assert loaded.returncode == 0, loaded.stderr
    await listener.until(lambda events: any(e.event == "backfill" for e in events))

    [backfill] = [e for e in listener.events if e.event == "backfill"]
    assert json.loads(backfill.data) == {"count": 1500, "last_id": int(backfill.id)}
    assert len(listener.metric_ids()) == 5  # the large load came as one event, not 1,500
    after = await record(http, auth)
    await listener.has_ids([after])
    await listener.stop()


async def test_reconnecting_with_last_event_id_sends_exactly_what_was_missed(
    http: httpx.AsyncClient, base: str
) -> None:
    _, auth = await new_user(http)
    listener = await Listener.open(base, auth)
    seen = [await record(http, auth) for _ in range(2)]
    await listener.has_ids(seen)
    await listener.stop()

    missed = [await record(http, auth) for _ in range(3)]
    resumed = await Listener.open(base, {**auth, "Last-Event-ID": listener.last_event_id})
    await resumed.has_ids(missed)
    new = await record(http, auth)
    await resumed.has_ids([new])

    assert resumed.metric_ids() == [*missed, new]
    await resumed.stop()


async def test_a_reconnect_before_any_metric_resumes_from_the_position_it_was_told(
    http: httpx.AsyncClient, base: str
) -> None:
    _, auth = await new_user(http)
    listener = await Listener.open(base, auth)
    await listener.stop()

    missed = await record(http, auth)
    resumed = await Listener.open(base, auth, {"after": listener.last_event_id})
    await resumed.has_ids([missed])

    assert resumed.metric_ids() == [missed]
    await resumed.stop()


async def test_nothing_is_missed_when_the_listening_connection_is_killed(
    http: httpx.AsyncClient, base: str, pg_url: str
) -> None:
    _, auth = await new_user(http)
    user_id = (await http.get("/api/auth/me", headers=auth)).json()["id"]
    listeners = [await Listener.open(base, auth) for _ in range(4)]  # on both workers, surely
    before = await record(http, auth)
    for listener in listeners:
        await listener.has_ids([before])

    with psycopg.connect(pg_url) as conn:
        # Three metrics committed just as the listening connections die: their
        # notifications reach no listener.
        with conn.transaction():
            for n in range(3):
                conn.execute(
                    "INSERT INTO engagement_metrics (user_id, metric_type, metric_value)"
                    " SELECT owner, 'steps', %s FROM engage_lock_metric_writes(%s) AS owner",
                    [n, user_id],
                )
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                " WHERE application_name = 'engage-live'"
            ).fetchone()
        during = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM engagement_metrics WHERE user_id = %s AND id > %s ORDER BY id",
                [user_id, before],
            )
        ]
    assert killed is not None
    assert killed[0] >= 1
    # No other write follows to bring them along: the reconnected feed reads them itself.
    for listener in listeners:
        await listener.has_ids(during)
    after = await record(http, auth)

    for listener in listeners:
        await listener.has_ids([after])
        assert listener.metric_ids() == [before, *during, after]
        await listener.stop()
    with psycopg.connect(pg_url) as conn:
        again = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'engage-live'"
        ).fetchone()
    assert again is not None
    assert again[0] >= 1


async def test_logging_out_closes_the_stream_it_opened(http: httpx.AsyncClient, base: str) -> None:
    email, auth = await new_user(http)
    mine = await Listener.open(base, auth)
    other_device = await http.post("/api/auth/token", json={"email": email, "password": PASSWORD})
    other = {"Authorization": f"Bearer {other_device.json()['access_token']}"}
    kept = await Listener.open(base, other)

    assert (await http.post("/api/auth/logout", headers=auth)).status_code == 204

    async with asyncio.timeout(WAIT):
        await mine.closed.wait()
    assert mine.events[-1].event == "end"
    assert json.loads(mine.events[-1].data) == {"reason": "access ended"}
    later = await record(http, other)
    await kept.has_ids([later])
    refused = await http.get(STREAM, headers=auth)
    assert refused.status_code == 401
    await kept.stop()


async def test_revoking_a_key_closes_its_streams(http: httpx.AsyncClient, base: str) -> None:
    _, auth = await new_user(http)
    key = await new_key(http, auth, "metrics:read")
    listener = await Listener.open(base, key["auth"])

    assert (await http.delete(f"/api/keys/{key['id']}", headers=auth)).status_code == 204

    async with asyncio.timeout(WAIT):
        await listener.closed.wait()
    assert listener.events[-1].event == "end"


@pytest.fixture(scope="module")
def one_worker(env: dict[str, str]) -> Iterator[str]:
    """One worker (so the per-worker stream limit is one count), 3 streams a user."""
    with running_server({**env, "ENGAGE_STREAMS_PER_USER": "3"}, workers=1) as (_, url):
        yield url


async def test_a_stream_whose_client_left_is_let_go_at_once(
    http: httpx.AsyncClient, one_worker: str
) -> None:
    """A client that goes frees its place though no event came that would find it gone:
    the user may open as many streams again."""
    _, auth = await new_user(http)
    first = [await Listener.open(one_worker, auth) for _ in range(3)]
    async with httpx.AsyncClient(base_url=one_worker, timeout=WAIT) as client:
        assert (await client.get(STREAM, headers=auth)).status_code == 429
    for listener in first:
        await listener.stop()

    again: list[Listener] = []
    async with asyncio.timeout(WAIT):
        while len(again) < 3:
            listener = await Listener.try_open(one_worker, auth)
            if listener is None:  # the worker has not yet seen one of the first go
                await asyncio.sleep(0.05)
            else:
                again.append(listener)
    async with httpx.AsyncClient(base_url=one_worker, timeout=WAIT) as client:
        assert (await client.get(STREAM, headers=auth)).status_code == 429
        metric_id = await record(client, auth)
    for listener in again:
        await listener.has_ids([metric_id])
        await listener.stop()


async def test_a_request_head_larger_than_the_http_buffer_is_a_431(one_worker: str) -> None:
    """ENGAGE_HTTP_BUFFER_BYTES (8192 by default) bounds a request's head."""
    async with httpx.AsyncClient(base_url=one_worker, timeout=WAIT) as client:
        fits = await client.get("/healthz", headers={"x-padding": "a" * 7000})
        too_large = await client.get("/healthz", headers={"x-padding": "a" * 9000})

    assert fits.status_code == 200
    assert too_large.status_code == 431


async def test_a_write_only_key_may_not_stream(http: httpx.AsyncClient) -> None:
    _, auth = await new_user(http)
    key = await new_key(http, auth, "metrics:write")

    response = await http.get(STREAM, headers=key["auth"])

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("headers", "params"),
    [({"Last-Event-ID": "soon"}, {}), ({}, {"after": "-3"}), ({}, {"metric_type": "bad type"})],
)
async def test_a_bad_stream_request_is_a_400_problem(
    http: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str]
) -> None:
    _, auth = await new_user(http)

    response = await http.get(STREAM, headers={**auth, **headers}, params=params)

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


# --- one user's streams, counted for the deployment ----------------------------------------

LIMIT = 3


@pytest.fixture(scope="module")
def limited(env: dict[str, str]) -> Iterator[str]:
    """Two workers, 3 streams a user (in all, not per worker)."""
    with running_server({**env, "ENGAGE_STREAMS_PER_USER": str(LIMIT)}, workers=2) as (_, url):
        yield url


def held_by_listener(env: dict[str, str], email: str) -> dict[int, int]:
    """The user's open streams in each worker, by its listening connection."""
    with psycopg.connect(env["ENGAGE_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT f.listener, f.streams FROM live_followers f JOIN users u ON u.id = f.user_id"
            " WHERE u.email = %s",
            [email],
        ).fetchall()
    return {int(listener): int(streams) for listener, streams in rows}


async def until_held(env: dict[str, str], email: str, total: int) -> dict[int, int]:
    async with asyncio.timeout(WAIT):
        while True:
            held = held_by_listener(env, email)
            if sum(held.values()) == total:
                return held
            await asyncio.sleep(0.05)


async def test_one_users_streams_are_bounded_across_the_workers(
    env: dict[str, str], limited: str
) -> None:
    """With the user's 3 streams spread over both workers, a 4th is refused whichever
    worker takes it; closing one frees a place, in either."""
    async with httpx.AsyncClient(base_url=limited, timeout=WAIT) as client:
        email, auth = await new_user(client)
    # Each stream on its own connection: the kernel spreads them over the workers.
    for _ in range(20):
        held = [await Listener.open(limited, auth) for _ in range(LIMIT)]
        if len(await until_held(env, email, LIMIT)) == 2:
            break
        for listener in held:  # all on one worker: again, until both hold some
            await listener.stop()
        await until_held(env, email, 0)
    else:
        pytest.fail("the streams never landed on both workers")

    async def refused() -> None:
        for _ in range(12):  # each on a new connection, so both workers answer some
            async with httpx.AsyncClient(base_url=limited, timeout=WAIT) as client:
                response = await client.get(STREAM, headers=auth)
            assert response.status_code == 429
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["retry-after"] == "15"

    await refused()
    assert sum(held_by_listener(env, email).values()) == LIMIT  # the refused were undone

    await held.pop().stop()
    async with asyncio.timeout(WAIT):
        while True:
            again = await Listener.try_open(limited, auth)
            if again is not None:
                break
            await asyncio.sleep(0.05)  # the worker has not yet seen it go
    held.append(again)
    await refused()
    async with httpx.AsyncClient(base_url=limited, timeout=WAIT) as client:
        metric_id = await record(client, auth)
    for listener in held:
        await listener.has_ids([metric_id])
        await listener.stop()
