"""`engage serve` as an operator runs it: migrations on start, a real server, graceful stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from support.serve import running_server


@pytest.fixture
def server(pg_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with psycopg.connect(pg_url) as conn:
        conn.execute("TRUNCATE users CASCADE")
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": "s" * 40,
        "ENGAGE_DATA_DIR": str(tmp_path),
        "ENGAGE_BCRYPT_ROUNDS": "12",
    }
    with running_server(env) as running:
        yield running


def test_serves_the_api_and_refuses_a_busy_port(
    server: tuple[subprocess.Popen[str], str], pg_url: str, tmp_path: Path
) -> None:
    _, base = server
    assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
    port = base.rsplit(":", 1)[1]
    second = subprocess.run(
        [sys.executable, "-m", "engage_cli", "serve", "--port", port],
        env={
            **os.environ,
            "ENGAGE_DATABASE_URL": pg_url,
            "ENGAGE_JWT_SECRET": "s" * 40,
            "ENGAGE_DATA_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert second.stderr.strip() == f"engage: error: port {port} on 127.0.0.1 is already in use"


def test_sigterm_lets_requests_in_flight_finish(server: tuple[subprocess.Popen[str], str]) -> None:
    process, base = server

    def sign_up(n: int) -> int:
        body = {"email": f"user{n}@example.com", "password": "password-123"}
        return httpx.post(f"{base}/api/auth/signup", json=body, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        # Four bcrypt hashes at cost 12 keep the server busy for a good while.
        pending = [pool.submit(sign_up, n) for n in range(4)]
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        statuses = [f.result() for f in pending]
    assert statuses == [201, 201, 201, 201]
    assert process.wait(timeout=60) == 0


def test_metrics_add_up_every_workers_requests(pg_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": "s" * 40,
        "ENGAGE_DATA_DIR": str(tmp_path),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with running_server(env, workers=2) as (_, base):
        for _ in range(40):  # a new connection each: the kernel spreads them over both workers
            assert httpx.get(f"{base}/healthz").status_code == 200
        text = httpx.get(f"{base}/metrics").text

    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("engage_requests_total{") and 'path="/healthz"' in line
    )
    assert counted == 40, text[:2000]
    assert "engage_db_pool_connections{" in text


def test_every_line_it_writes_is_a_json_log_line(pg_url: str, tmp_path: Path) -> None:
    """Its own warnings and granian's lines included, from start to stop: a log
    shipper that parses JSON lines drops none."""
    env = {**os.environ, "ENGAGE_DATABASE_URL": pg_url, "ENGAGE_DATA_DIR": str(tmp_path)}
    env.pop("ENGAGE_JWT_SECRET", None)  # so that it warns of the one it makes
    output: list[str] = []
    with running_server(env, output=output) as (_, base):
        assert httpx.get(f"{base}/healthz").status_code == 200
    lines = [json.loads(line) for line in output if line.strip()]
    assert all(isinstance(line, dict) and {"event", "level"} <= line.keys() for line in lines)
    events = [line["event"] for line in lines]
    assert any("jwt_secret_generated" in event for event in events)
    assert "http.request" in events
    assert any(line.get("logger", "").startswith("_granian") for line in lines)


def test_a_worker_that_dies_is_started_again(pg_url: str, tmp_path: Path) -> None:
    """A worker killed (the out-of-memory killer, a crash) is replaced, and the
    other one serves meanwhile: one lost process does not stop the service."""
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": "s" * 40,
        "ENGAGE_DATA_DIR": str(tmp_path),
    }
    output: list[str] = []

    def spawned() -> list[int]:
        return [
            int(pid) for pid in re.findall(r"Spawning worker-\d+ with PID: (\d+)", "".join(output))
        ]

    with running_server(env, workers=2, output=output) as (process, base):
        first, _ = spawned()
        os.kill(first, signal.SIGKILL)

        deadline = time.monotonic() + 30
        while len(spawned()) < 3:
            assert process.poll() is None, "".join(output[-20:])
            assert time.monotonic() < deadline, "".join(output[-20:])
            time.sleep(0.2)
        for _ in range(20):  # a new connection each, so both workers answer
            assert httpx.get(f"{base}/readyz").status_code == 200
        assert process.poll() is None
