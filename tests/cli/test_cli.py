"""The `engage` command as an operator meets it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from engage_cli.main import app

runner = CliRunner()


def test_help_lists_the_command_groups() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "settings" in result.output


def test_settings_check_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGAGE_JWT_SECRET", "super-secret-value-of-32-bytes-or-more")
    monkeypatch.setenv("ENGAGE_DATABASE_URL", "postgresql://app:hunter2@db/engage")
    result = runner.invoke(app, ["settings", "check"])
    assert result.exit_code == 0
    assert "super-secret" not in result.output
    assert "hunter2" not in result.output
    assert "jwt_secret = (set)" in result.output


def test_bad_settings_are_one_line_and_exit_1() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "engage_cli", "settings", "check"],
        env={"ENGAGE_BCRYPT_ROUNDS": "100", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 1
    assert completed.stderr.count("\n") == 1
    assert completed.stderr.startswith("engage: error: ENGAGE_BCRYPT_ROUNDS")
    assert "Traceback" not in completed.stderr


def test_an_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["frobnicate"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("variables", "workers", "size", "warned"),
    [
        ({}, 2, 10, False),
        ({}, 16, 5, False),  # sized down to fit max_connections
        ({}, 200, 1, True),  # cannot fit: one each, and a warning
        ({"ENGAGE_DB_POOL_SIZE": "3"}, 4, 3, False),
        ({"ENGAGE_DB_POOL_SIZE": "50"}, 4, 50, True),  # as configured, with a warning
    ],
)
def test_serve_sizes_each_workers_pool_within_max_connections(
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    workers: int,
    size: int,
    warned: bool,
) -> None:
    from engage_adapters.settings import load_settings
    from engage_cli.serve import _pool_size

    assert _pool_size(load_settings(variables), workers, budget=97) == size
    warning = capsys.readouterr().err
    assert ("exceed what the database allows" in warning) is warned
    assert warning.count("\n") == (1 if warned else 0)
