"""`engage serve` under load while its PostgreSQL crashes and comes back.

Two workers, eight writers, the database stopped (``pg_ctl stop -m immediate``)
for 3 s and started again: every answer is a 201 or a 503 problem with
Retry-After, every 201 is stored, and the service is ready again within 10 s
of the restart, by itself.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from engage_adapters.postgres.pool import ANSWER_WITHIN
from support.postgres_server import DisposablePostgres, disposable_postgres
from support.serve import running_server

WRITERS = 8
OUTAGE = 3.0
# The contract: ready again within 10 s of the database's restart.
HEAL_LIMIT = 10.0
# Longer than any answer may take (the pool waits 2 s): a slower one is a hang.
HANG_LIMIT = 10.0
PASSWORD = "password-123"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DisposablePostgres]:
    with disposable_postgres(tmp_path_factory.mktemp("outage-pg")) as running:
        yield running


@pytest.fixture
def engage(
    server: DisposablePostgres, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": server.url,
        "ENGAGE_JWT_SECRET": "s" * 40,
        "ENGAGE_DATA_DIR": str(tmp_path),
        "ENGAGE_BCRYPT_ROUNDS": "4",
    }
    with running_server(env, workers=2) as running:
        yield running


async def test_a_database_crash_under_load_answers_201_or_503_and_heals(
    server: DisposablePostgres, engage: tuple[subprocess.Popen[str], str]
) -> None:
    _, base = engage
    async with httpx.AsyncClient(base_url=base, timeout=HANG_LIMIT) as client:
        credentials = {"email": "writer@example.com", "password": PASSWORD}
        assert (await client.post("/api/auth/signup", json=credentials)).status_code == 201
        token = (await client.post("/api/auth/token", json=credentials)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        answers: list[httpx.Response] = []
        stop = asyncio.Event()

        async def write(writer: int) -> None:
            async with httpx.AsyncClient(base_url=base, headers=auth, timeout=HANG_LIMIT) as own:
                n = 0
                while not stop.is_set():
                    n += 1
                    metric = {"metric_type": f"writer-{writer}", "metric_value": n}
                    answer = await own.post("/api/dashboard/metrics", json=metric)
                    answers.append(answer)
                    if answer.status_code == 503:
                        await asyncio.sleep(0.1)

        writers = [asyncio.create_task(write(w)) for w in range(WRITERS)]
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.crash)
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(server.start)
        async with asyncio.timeout(HEAL_LIMIT):
            while True:
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.2)
        healed_at = len(answers)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*writers)

    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {201, 503}, sorted(set(statuses))
    assert 503 in statuses  # the outage was seen
    assert 201 in statuses[healed_at:]  # and writing works again
    for refused in (a for a in answers if a.status_code == 503):
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert int(refused.headers["Retry-After"]) >= 1
    acknowledged = {a.json()["id"] for a in answers if a.status_code == 201}
    with psycopg.connect(server.url) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM engagement_metrics")}
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged writes lost"


async def test_a_frozen_database_answers_503_in_bounded_time_and_heals(
    server: DisposablePostgres, engage: tuple[subprocess.Popen[str], str]
) -> None:
    _, base = engage
    # Past the pool's 2 s and the statements' ANSWER_WITHIN (10 s): a slower answer is a hang.
    bound = ANSWER_WITHIN + 5.0
    async with httpx.AsyncClient(base_url=base, timeout=bound + 10) as client:
        credentials = {"email": "frozen@example.com", "password": PASSWORD}
        assert (await client.post("/api/auth/signup", json=credentials)).status_code == 201
        token = (await client.post("/api/auth/token", json=credentials)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        async def me() -> tuple[httpx.Response, float]:
            # A connection of its own each: both workers, several pooled connections.
            async with httpx.AsyncClient(base_url=base, headers=auth, timeout=bound + 10) as own:
                started = time.monotonic()
                answer = await own.get("/api/auth/me")
                return answer, time.monotonic() - started

        # Open several pooled connections in each worker, then freeze the server.
        for answer, _ in await asyncio.gather(*(me() for _ in range(12))):
            assert answer.status_code == 200
        with server.frozen():
            answers = await asyncio.gather(*(me() for _ in range(12)))
        async with asyncio.timeout(HEAL_LIMIT):
            while True:
                if (await client.get("/api/auth/me", headers=auth)).status_code == 200:
                    break
                await asyncio.sleep(0.2)

    for answer, took in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert int(answer.headers["Retry-After"]) >= 1
        assert took < bound, f"answered after {took:.1f} s"
