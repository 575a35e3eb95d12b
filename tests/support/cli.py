"""Running the real `engage` command in tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

JWT_SECRET = "a-test-secret-that-is-long-enough-0123456789"
# Set, like the JWT secret, so no command warns that it generated one.
ENCRYPTION_KEY = "a-test-encryption-key-that-is-long-enough-0123456789"


def cli_settings(pg_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of an `engage` run on ``pg_url``; also set in this process,
    for CliRunner tests and checks through the services."""
    settings = {
        "ENGAGE_DATABASE_URL": pg_url,  # a postgresql:// URL
        "ENGAGE_JWT_SECRET": JWT_SECRET,
        "ENGAGE_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "ENGAGE_DATA_DIR": str(data_dir),
        "ENGAGE_BCRYPT_ROUNDS": "4",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return {"PATH": "/usr/bin:/bin", **settings}


def engage(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real command; without ``stdin`` its stdin is /dev/null (no terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "engage_cli", *args],
        env=env,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def engage_read_one_line(env: dict[str, str], *args: str) -> tuple[int, bytes]:
    """Run the real command and leave after its first line of output, as ``| head -1``
    does; its exit status and what it wrote to stderr."""
    reader = subprocess.Popen(
        [sys.executable, "-m", "engage_cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None
    assert reader.stderr is not None
    reader.stdout.readline()
    reader.stdout.close()
    with reader.stderr:
        errors = reader.stderr.read()
    return reader.wait(timeout=120), errors


def assert_one_error_line(completed: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 1, nothing on stdout, one `engage: error:` line on stderr."""
    assert completed.returncode == 1, completed.stderr
    assert completed.stdout == ""
    assert completed.stderr.startswith("engage: error: ")
    assert completed.stderr.count("\n") == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    for fragment in fragments:
        assert fragment in completed.stderr
