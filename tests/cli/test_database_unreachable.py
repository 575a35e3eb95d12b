"""A database that cannot be reached: one line, `engage: error: database unreachable: …`,
and exit status 1, from every command that needs it (start-up included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import JWT_SECRET, assert_one_error_line, engage
from support.serve import free_port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Settings naming a PostgreSQL on a loopback port where nothing listens."""
    return {
        "PATH": "/usr/bin:/bin",
        "ENGAGE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/engage",
        "ENGAGE_JWT_SECRET": JWT_SECRET,
        "ENGAGE_DATA_DIR": str(tmp_path),
    }


@pytest.mark.parametrize(
    "command",
    [["user", "list"], ["db", "status"], ["metrics", "export"], ["serve", "--workers", "1"]],
    ids=["user-list", "db-status", "metrics-export", "serve"],
)
def test_a_command_against_an_unreachable_database_says_so_in_one_line(
    env: dict[str, str], command: list[str]
) -> None:
    completed = engage(env, *command)

    assert_one_error_line(completed, "Connection refused")
    assert completed.stderr.startswith("engage: error: database unreachable: ")
