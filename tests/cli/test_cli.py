"""The `engage` command as an operator meets it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize("command", [["settings", "check"], ["user", "list"]])
def test_a_setting_that_is_not_utf8_is_one_line_and_exit_1(command: list[str]) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "engage_cli", *command],
        # os.fsencode gives the child the byte 0xff, as `export X=$'\xff'` would.
        env={"ENGAGE_DATABASE_URL": "postgresql://\udcff@db/engage", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    assert completed.stderr == "engage: error: ENGAGE_DATABASE_URL is not valid UTF-8\n"


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


def _settings_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engage_cli", "settings", "check"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_settings_check_prints_each_fault_on_a_line_of_its_own(tmp_path: Path) -> None:
    completed = _settings_check(
        {
            "ENGAGE_DATA_DIR": str(tmp_path),
            "ENGAGE_BCRYPT_ROUNDS": "100",
            "ENGAGE_DB_POOL_SIZE": "many",
        }
    )

    assert completed.returncode == 1
    lines = completed.stderr.splitlines()
    assert len(lines) == 2, completed.stderr
    assert lines[0].startswith("engage: error: ENGAGE_BCRYPT_ROUNDS")
    assert lines[1].startswith("engage: error: ENGAGE_DB_POOL_SIZE")
    assert completed.stdout == ""


def test_settings_check_says_the_jwt_secret_comes_from_the_data_directory(
    tmp_path: Path,
) -> None:
    from engage_adapters.settings import load_settings, resolve_jwt_secret

    env = {"ENGAGE_DATA_DIR": str(tmp_path)}
    before = _settings_check(env)
    assert before.returncode == 0, before.stderr
    assert f"jwt_secret = (unset: a random one is written to {tmp_path / 'jwt-secret'}" in (
        before.stdout
    )
    assert not (tmp_path / "jwt-secret").exists()  # a check writes nothing
    secret = resolve_jwt_secret(load_settings(env)).decode()  # as the first `engage serve` does

    after = _settings_check(env)

    assert after.returncode == 0, after.stderr
    assert f"jwt_secret = (from {tmp_path / 'jwt-secret'})" in after.stdout
    assert secret not in after.stdout + after.stderr


def test_settings_check_refuses_a_secret_file_others_can_read(tmp_path: Path) -> None:
    from engage_adapters.settings import load_settings, resolve_jwt_secret

    env = {"ENGAGE_DATA_DIR": str(tmp_path)}
    resolve_jwt_secret(load_settings(env))
    (tmp_path / "jwt-secret").chmod(0o644)

    completed = _settings_check(env)

    assert completed.returncode == 1
    assert completed.stderr.count("\n") == 1
    assert "must not be readable by others" in completed.stderr


def _command_paths() -> list[list[str]]:
    """Every command and group of `engage`, as the words that name it."""
    import typer.main

    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "engage")
def test_help_shows_no_value_after_a_flag(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    help_line = next(line for line in result.output.splitlines() if "--help" in line)
    assert "<" not in help_line


def test_the_real_command_shows_flags_bare_and_the_choices_of_format() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "engage_cli", "user", "delete", "--help"],
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    yes = next(line for line in completed.stdout.splitlines() if "--yes" in line)
    assert "<" not in yes, yes
    for command in ("backfill", "export"):
        result = runner.invoke(app, ["metrics", command, "--help"], env={"COLUMNS": "200"})
        format_line = next(line for line in result.output.splitlines() if "--format" in line)
        assert "<csv|jsonl>" in format_line, format_line


@pytest.mark.parametrize("command", ["backfill", "export"])
def test_an_unknown_format_is_a_usage_error_naming_the_choices(command: str) -> None:
    args = ["metrics", command, "--format", "xml", *(["-"] if command == "backfill" else [])]
    completed = subprocess.run(
        [sys.executable, "-m", "engage_cli", *args],
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )

    assert completed.returncode == 2
    assert "'csv'" in completed.stderr
    assert "'jsonl'" in completed.stderr
    assert "Traceback" not in completed.stderr
