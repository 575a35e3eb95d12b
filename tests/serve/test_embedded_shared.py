"""The zero-configuration path end to end: `engage serve` on the embedded PostgreSQL,
a second `engage` process sharing it at the same time, the data visible over HTTP at once."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from support.cli import engage
from support.serve import running_server

ROWS = 100_000


def test_cli_and_server_share_the_embedded_database(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGAGE_")} | {
        "ENGAGE_DATA_DIR": str(tmp_path / "data"),
        "ENGAGE_BCRYPT_ROUNDS": "4",
    }
    with running_server(env) as (server, base):
        created = engage(
            env, "user", "create", "ada@example.com", "--password-stdin", stdin="password-123\n"
        )
        assert created.returncode == 0, created.stderr
        start = datetime(2026, 1, 1, tzinfo=UTC)
        lines = ["metric_type,metric_value,recorded_at"] + [
            f"views,{i % 10},{(start + timedelta(seconds=i)).isoformat()}" for i in range(ROWS)
        ]
        file = tmp_path / "views.csv"
        file.write_text("\n".join(lines) + "\n")
        loaded = engage(env, "metrics", "backfill", str(file), "--user", "ada@example.com")
        assert loaded.returncode == 0, loaded.stderr
        assert f"loaded {ROWS} metrics" in loaded.stdout

        token = httpx.post(
            f"{base}/api/auth/token",
            json={"email": "ada@example.com", "password": "password-123"},
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        page = httpx.get(f"{base}/api/dashboard/metrics", headers=auth).json()
        assert page["items"][0]["recorded_at"] == (
            start + timedelta(seconds=ROWS - 1)
        ).isoformat().replace("+00:00", "Z")
        summary = httpx.get(
            f"{base}/api/dashboard/summary", params={"bucket": "week"}, headers=auth
        ).json()
        assert sum(p["count"] for s in summary["series"] for p in s["points"]) == ROWS
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    # The last process using the embedded server has exited: it is stopped.
    postmaster = tmp_path / "data" / "postgres" / "postmaster.pid"
    deadline = time.monotonic() + 10
    while postmaster.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not postmaster.exists()


def test_the_embedded_server_is_started_again_when_its_process_dies(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGAGE_")} | {
        "ENGAGE_DATA_DIR": str(tmp_path / "data"),
        "ENGAGE_BCRYPT_ROUNDS": "4",
    }
    credentials = {"email": "ada@example.com", "password": "password-123"}
    postmaster = tmp_path / "data" / "postgres" / "postmaster.pid"
    output: list[str] = []
    with running_server(env, output=output) as (_, base):
        assert httpx.post(f"{base}/api/auth/signup", json=credentials).status_code == 201
        token = httpx.post(f"{base}/api/auth/token", json=credentials).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        killed = int(postmaster.read_text().split()[0])

        os.kill(killed, signal.SIGKILL)  # as the out-of-memory killer would

        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "".join(output[-20:])
            ready = httpx.get(f"{base}/readyz", timeout=5).status_code == 200
            if ready and postmaster.exists() and int(postmaster.read_text().split()[0]) != killed:
                break
            time.sleep(0.5)
        metric = {"metric_type": "views", "metric_value": 1}
        written = httpx.post(f"{base}/api/dashboard/metrics", json=metric, headers=auth)
        assert written.status_code == 201, written.text
        page = httpx.get(f"{base}/api/dashboard/metrics", headers=auth).json()
        assert [item["id"] for item in page["items"]] == [written.json()["id"]]
    [said] = [json.loads(line) for line in output if "started it again" in line]
    assert said["level"] == "warning"
