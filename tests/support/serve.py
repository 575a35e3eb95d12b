"""Running the real `engage serve` in tests, and stopping it whatever happens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_env(database_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a busy test `engage serve`: this process's, the database and
    a data directory, bcrypt at its cheapest, the per-address sign-in limit out of the
    way, warnings only; then ``settings`` (``ENGAGE_REDIS_URL=...``)."""
    return {
        **os.environ,
        "ENGAGE_DATABASE_URL": database_url,
        "ENGAGE_JWT_SECRET": "s" * 40,
        "ENGAGE_DATA_DIR": str(data_dir),
        "ENGAGE_BCRYPT_ROUNDS": "4",
        "ENGAGE_AUTH_RATE_PER_MINUTE": "100000",
        "ENGAGE_LOG_LEVEL": "WARNING",
        **settings,
    }


@contextmanager
def running_server(
    env: dict[str, str],
    *,
    workers: int = 1,
    ready_within: float = 90.0,
    output: list[str] | None = None,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`engage serve` on a free loopback port, ready (/readyz is 200); the process
    and its base URL. Stopped with SIGTERM on the way out, killed if it hangs.
    Its output (stdout and stderr) is read as it comes (a full pipe would stall a
    busy server) into ``output``, whole once the server has stopped, and shown
    if it never gets ready."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engage_cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: workers included in the clean-up
    )
    output = [] if output is None else output
    reader = threading.Thread(target=output.extend, args=(process.stdout,), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_within
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                with suppress(ProcessLookupError):  # workers may outlive their parent
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                reader.join(timeout=30)
                pytest.fail(f"engage serve did not become ready:\n{''.join(output)}")
            time.sleep(0.2)
        yield process, base
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        reader.join(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
