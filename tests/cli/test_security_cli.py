"""`engage user unlock | mfa-reset | sessions | logout` and `engage activity`, run as an
operator runs them, beside services in this process on the same PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import psycopg
import pyotp
import pytest
from typer.testing import CliRunner

from engage_adapters.bootstrap import Services, build_services
from engage_adapters.settings import load_settings
from engage_cli import terminal
from engage_cli.main import app
from engage_core.errors import RateLimited, Unauthorized
from engage_core.model import Client
from engage_core.services.auth import AccessGrant, BrowserLogin, Principal
from engage_core.services.mfa import MfaRequired, step_at
from support.cli import assert_one_error_line, cli_settings, engage

PASSWORD = "correct horse battery"
EMAIL = "ada@example.com"
LAPTOP = Client(ip="203.0.113.5", user_agent="Mozilla/5.0 Firefox/133.0")
T = TypeVar("T")


@pytest.fixture
def env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("TRUNCATE users, sessions, activity, rate_limits RESTART IDENTITY CASCADE")
    settings = cli_settings(pg_url, tmp_path / "data", monkeypatch)
    # One key for this process and the commands it runs (else each would make its own file).
    settings["ENGAGE_ENCRYPTION_KEY"] = "the cli-test encryption key of at least 32 bytes"
    monkeypatch.setenv("ENGAGE_ENCRYPTION_KEY", settings["ENGAGE_ENCRYPTION_KEY"])
    completed = engage(settings, "user", "create", EMAIL, "--password-stdin", stdin=PASSWORD + "\n")
    assert completed.returncode == 0, completed.stderr
    return settings


def run(work: Callable[[Services], Awaitable[T]]) -> T:
    async def main() -> T:
        async with build_services(load_settings()) as services:
            return await work(services)

    return asyncio.run(main())


async def _fail_logins(services: Services) -> None:
    for _ in range(services.settings.login_failures_per_email):
        with contextlib.suppress(Unauthorized):
            await services.auth.log_in(email=EMAIL, password="not the password", client=LAPTOP)


async def _log_in(services: Services) -> BrowserLogin | MfaRequired:
    return await services.auth.log_in(email=EMAIL, password=PASSWORD, client=LAPTOP)


def test_unlock_clears_a_lock_that_another_process_set(env: dict[str, str]) -> None:
    run(_fail_logins)
    with pytest.raises(RateLimited):
        run(_log_in)

    completed = engage(env, "user", "unlock", EMAIL.upper())

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"failed logins cleared for {EMAIL}\n"
    assert isinstance(run(_log_in), BrowserLogin)


def test_mfa_reset_turns_the_second_factor_off_and_is_in_the_activity(
    env: dict[str, str],
) -> None:
    async def turn_on(services: Services) -> None:
        login = await _log_in(services)
        assert isinstance(login, BrowserLogin)
        principal = Principal(login.user.id, login.session_id)
        enrolment = await services.mfa.begin_totp(principal)
        code = pyotp.TOTP(enrolment.secret).generate_otp(step_at(services.clock.now()))
        await services.mfa.confirm_totp(principal, code, LAPTOP)

    run(turn_on)
    assert isinstance(run(_log_in), MfaRequired)
    assert_one_error_line(engage(env, "user", "mfa-reset", EMAIL), "--yes")

    completed = engage(env, "user", "mfa-reset", EMAIL, "--yes")

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"second factor off for {EMAIL}\n"
    assert isinstance(run(_log_in), BrowserLogin)
    assert_one_error_line(engage(env, "user", "mfa-reset", EMAIL, "--yes"), "no second factor")
    shown = engage(env, "activity", "--user", EMAIL, "--kind", "mfa.reset", "--json")
    entries = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(e["kind"], e["email"], e["user_agent"]) for e in entries] == [
        ("mfa.reset", EMAIL, "engage CLI (operator)")
    ]


def test_mfa_reset_on_a_terminal_asks_only_when_there_is_a_second_factor(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(terminal, "stdin_is_terminal", lambda: True)

    answered = CliRunner().invoke(app, ["user", "mfa-reset", EMAIL], input="y\n")

    assert answered.exit_code == 1
    assert "Turn the second factor" not in answered.output
    assert answered.stderr == f"engage: error: {EMAIL} has no second factor set up\n"


def test_sessions_lists_each_device_and_logout_ends_them_at_once(env: dict[str, str]) -> None:
    async def sign_in_twice(services: Services) -> str:
        await _log_in(services)
        grant = await services.auth.issue_token(email=EMAIL, password=PASSWORD)
        assert isinstance(grant, AccessGrant)
        return grant.access_token

    token = run(sign_in_twice)

    listed = engage(env, "user", "sessions", EMAIL)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert len(rows) == 2
    assert any("203.0.113.5" in row and "Firefox/133.0" in row for row in rows)

    ended = engage(env, "user", "logout", EMAIL)

    assert ended.returncode == 0, ended.stderr
    assert ended.stdout == f"2 session(s) of {EMAIL} ended\n"
    with pytest.raises(Unauthorized):
        run(lambda services: services.auth.authenticate(token))
    assert engage(env, "user", "sessions", EMAIL).stdout.count("\n") == 1  # the header only


def test_activity_lists_newest_first_and_filters(env: dict[str, str]) -> None:
    run(_fail_logins)

    table = engage(env, "activity")
    as_json = engage(env, "activity", "--kind", "login.failed", "--json")
    recent = engage(env, "activity", "--since", "2999-01-01T00:00:00Z", "--json")

    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["at", "kind", "email"]
    assert "login.failed" in lines[1]
    assert lines[-1].split()[1] == "signup"
    kinds = {json.loads(line)["kind"] for line in as_json.stdout.splitlines()}
    assert kinds == {"login.failed"}
    assert recent.stdout == ""


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("activity", "--kind", "nonsense"), "error: --kind must be one of"),
        (("activity", "--since", "yesterday"), "error: --since must be"),
        (("activity", "--user", "not an email"), "error: --user is not a valid address"),
        (("user", "sessions", "nobody@example.com"), "no user"),
        (("user", "logout", "nobody@example.com"), "no user"),
        (("user", "unlock", "nobody@example.com"), "no user"),
        (("user", "mfa-reset", "nobody@example.com", "--yes"), "no user"),
    ],
)
def test_bad_input_is_one_error_line(
    env: dict[str, str], args: tuple[str, ...], fragment: str
) -> None:
    assert_one_error_line(engage(env, *args), fragment)
