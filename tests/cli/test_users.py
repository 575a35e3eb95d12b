"""`engage user create | list | delete | set-password` as an operator runs them, on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from typer.testing import CliRunner

from engage_adapters.bootstrap import build_services
from engage_adapters.settings import load_settings
from engage_cli import terminal, users
from engage_cli.main import app
from engage_core.errors import Unauthorized
from support.cli import assert_one_error_line, cli_settings, engage

PASSWORD = "correct horse battery"
TABLES = "users, engagement_metrics, sessions, metric_rollups, idempotency_keys"


@pytest.fixture
def env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of an `engage` run on this module's (emptied) database.

    Also set in this process, for the CliRunner tests and the checks through
    the services.
    """
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return cli_settings(pg_url, tmp_path / "data", monkeypatch)


def create(env: dict[str, str], email: str, password: str = PASSWORD) -> UUID:
    completed = engage(env, "user", "create", email, "--password-stdin", stdin=password + "\n")
    assert completed.returncode == 0, completed.stderr
    return UUID(completed.stdout.strip())


def user_count(pg_url: str) -> int:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM users").fetchone()
    assert row is not None
    return int(row[0])


def logs_in(email: str, password: str) -> bool:
    async def attempt() -> bool:
        async with build_services(load_settings()) as services:
            try:
                await services.auth.log_in(email=email, password=password)
            except Unauthorized:
                return False
            return True

    return asyncio.run(attempt())


def as_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the commands believe stdin is a terminal (CliRunner feeds the answers)."""
    monkeypatch.setattr(terminal, "stdin_is_terminal", lambda: True)


runner = CliRunner()

# --- create -------------------------------------------------------------------


def test_create_reads_the_password_from_stdin_and_prints_the_new_id(
    env: dict[str, str], pg_url: str
) -> None:
    completed = engage(
        env, "user", "create", "Ada@Example.COM", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert completed.returncode == 0, completed.stderr
    user_id = UUID(completed.stdout.strip())
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT email FROM users WHERE id = %s", [user_id]).fetchone()
    assert row == ("Ada@example.com",)  # the domain lower-cased, as the API stores it
    assert logs_in("ada@example.com", PASSWORD)


def test_password_stdin_strips_the_line_ending_only(env: dict[str, str]) -> None:
    spaced = "  two words, and spaces  "
    create(env, "ada@example.com", spaced + "\r")  # "...\r\n" from a Windows editor
    assert logs_in("ada@example.com", spaced)
    assert not logs_in("ada@example.com", spaced.strip())


def test_create_refuses_a_bad_email(env: dict[str, str], pg_url: str) -> None:
    completed = engage(env, "user", "create", "not-an-email", "--password-stdin", stdin=PASSWORD)
    assert_one_error_line(completed, "email is not a valid address")
    assert user_count(pg_url) == 0


def test_create_refuses_a_short_password(env: dict[str, str], pg_url: str) -> None:
    completed = engage(env, "user", "create", "ada@example.com", "--password-stdin", stdin="short")
    assert_one_error_line(completed, "password must be 8 to 256 characters long")
    assert user_count(pg_url) == 0


def test_create_refuses_an_email_taken_in_another_letter_case(
    env: dict[str, str], pg_url: str
) -> None:
    create(env, "ada@example.com")
    completed = engage(env, "user", "create", "ADA@EXAMPLE.COM", "--password-stdin", stdin=PASSWORD)
    assert_one_error_line(completed, "an account with this email already exists")
    assert user_count(pg_url) == 1


def test_create_without_a_terminal_needs_password_stdin(env: dict[str, str], pg_url: str) -> None:
    completed = engage(env, "user", "create", "ada@example.com")
    assert_one_error_line(completed, "--password-stdin")
    assert user_count(pg_url) == 0


def test_create_with_empty_stdin_fails(env: dict[str, str], pg_url: str) -> None:
    completed = engage(env, "user", "create", "ada@example.com", "--password-stdin", stdin="")
    assert_one_error_line(completed, "stdin is empty")
    assert user_count(pg_url) == 0


def test_create_on_a_terminal_asks_twice_without_echo(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    as_terminal(monkeypatch)
    result = runner.invoke(app, ["user", "create", "ada@example.com"], input=f"{PASSWORD}\n" * 2)
    assert result.exit_code == 0, result.output
    assert "Password:" in result.output
    assert "Repeat for confirmation:" in result.output
    assert PASSWORD not in result.output
    UUID(result.stdout.strip().splitlines()[-1])
    assert logs_in("ada@example.com", PASSWORD)


def test_create_on_a_terminal_says_the_email_is_taken_before_asking(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    create(env, "ada@example.com")
    as_terminal(monkeypatch)
    result = runner.invoke(app, ["user", "create", "Ada@example.com"], input="")
    assert result.exit_code == 1
    assert "Password" not in result.output
    assert result.stderr == "engage: error: an account with this email already exists\n"


def test_create_without_an_email_is_a_usage_error(env: dict[str, str]) -> None:
    assert engage(env, "user", "create").returncode == 2


# --- list -----------------------------------------------------------------------


def test_list_prints_a_table_ordered_by_email(env: dict[str, str]) -> None:
    ids = {email: create(env, email) for email in ("carol@example.com", "Ada@example.com")}
    completed = engage(env, "user", "list")
    assert completed.returncode == 0, completed.stderr
    header, *lines = completed.stdout.splitlines()
    assert header.split() == ["id", "created_at", "email"]
    assert [line.split()[0] for line in lines] == [
        str(ids["Ada@example.com"]),
        str(ids["carol@example.com"]),
    ]
    assert [line.split()[2] for line in lines] == ["Ada@example.com", "carol@example.com"]
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", line.split()[1]) for line in lines
    )


def test_list_json_is_an_array_of_every_user_across_pages(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = [f"user{i}@example.com" for i in range(5)]
    ids = {email: create(env, email) for email in emails}
    monkeypatch.setattr(users, "PAGE_SIZE", 2)  # 5 users: three pages
    result = runner.invoke(app, ["user", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [item["email"] for item in listed] == emails
    assert [item["id"] for item in listed] == [str(ids[e]) for e in emails]
    assert all(set(item) == {"id", "email", "created_at"} for item in listed)


def test_list_json_of_no_users_is_an_empty_array(env: dict[str, str]) -> None:
    completed = engage(env, "user", "list", "--json")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == []


# --- delete ---------------------------------------------------------------------


async def _record_a_metric(email: str) -> None:
    async with build_services(load_settings()) as services:
        user = await services.admin.find(email)
        await services.metrics.record(user.id, metric_type="views", metric_value=Decimal(3))


def test_delete_with_yes_removes_the_user_and_their_data(env: dict[str, str], pg_url: str) -> None:
    user_id = create(env, "ada@example.com")
    create(env, "bob@example.com")
    asyncio.run(_record_a_metric("ada@example.com"))
    completed = engage(env, "user", "delete", "ADA@example.com", "--yes")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"deleted ada@example.com ({user_id})\n"
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT email FROM users").fetchall() == [("bob@example.com",)]
        assert conn.execute("SELECT count(*) FROM engagement_metrics").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM metric_rollups").fetchone() == (0,)
        # Their verification mail, not sent yet, goes too (its link would lead nowhere).
        unsent = dict(
            conn.execute(
                "SELECT recipient, count(*) FROM mail_outbox WHERE status <> 'sent'"
                " GROUP BY recipient"
            ).fetchall()
        )
        assert "ada@example.com" not in unsent
        assert unsent["bob@example.com"] >= 1


def test_delete_of_an_unknown_user_fails(env: dict[str, str]) -> None:
    completed = engage(env, "user", "delete", "nobody@example.com", "--yes")
    assert_one_error_line(completed, "no user with email nobody@example.com")


def test_delete_without_yes_and_without_a_terminal_refuses(
    env: dict[str, str], pg_url: str
) -> None:
    create(env, "ada@example.com")
    completed = engage(env, "user", "delete", "ada@example.com")
    assert_one_error_line(completed, "pass --yes")
    assert user_count(pg_url) == 1


def test_delete_on_a_terminal_asks_first(
    env: dict[str, str], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(env, "ada@example.com")
    as_terminal(monkeypatch)
    declined = runner.invoke(app, ["user", "delete", "ada@example.com"], input="n\n")
    assert declined.exit_code == 1
    assert "Delete ada@example.com" in declined.output
    assert user_count(pg_url) == 1
    accepted = runner.invoke(app, ["user", "delete", "ada@example.com"], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert user_count(pg_url) == 0


# --- set-password ---------------------------------------------------------------


async def _log_in_and_keep_the_token(email: str) -> str:
    async with build_services(load_settings()) as services:
        login = await services.auth.log_in(email=email, password=PASSWORD)
        return login.access_token


async def _session_is_live(access_token: str) -> bool:
    async with build_services(load_settings()) as services:
        try:
            await services.auth.authenticate(access_token)
        except Unauthorized:
            return False
        return True


def test_set_password_replaces_it_and_ends_the_sessions(env: dict[str, str], pg_url: str) -> None:
    create(env, "ada@example.com")
    token = asyncio.run(_log_in_and_keep_the_token("ada@example.com"))
    assert asyncio.run(_session_is_live(token))
    completed = engage(
        env, "user", "set-password", "Ada@Example.com", "--password-stdin", stdin="a new secret\n"
    )
    assert completed.returncode == 0, completed.stderr
    assert "sessions have ended" in completed.stdout
    assert not logs_in("ada@example.com", PASSWORD)
    assert logs_in("ada@example.com", "a new secret")
    assert not asyncio.run(_session_is_live(token))
    with psycopg.connect(pg_url) as conn:
        ended = conn.execute("SELECT end_reason FROM sessions ORDER BY created_at").fetchall()
    assert ended[0] == ("password set by an operator",)


def test_set_password_of_an_unknown_user_fails(env: dict[str, str]) -> None:
    completed = engage(
        env, "user", "set-password", "nobody@example.com", "--password-stdin", stdin=PASSWORD
    )
    assert_one_error_line(completed, "no user with email nobody@example.com")


def test_set_password_refuses_a_short_one_and_keeps_the_old(env: dict[str, str]) -> None:
    create(env, "ada@example.com")
    completed = engage(
        env, "user", "set-password", "ada@example.com", "--password-stdin", stdin="short\n"
    )
    assert_one_error_line(completed, "password must be 8 to 256 characters long")
    assert logs_in("ada@example.com", PASSWORD)


def test_set_password_on_a_terminal_asks_twice(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    create(env, "ada@example.com")
    as_terminal(monkeypatch)
    result = runner.invoke(
        app, ["user", "set-password", "ada@example.com"], input="a new secret\n" * 2
    )
    assert result.exit_code == 0, result.output
    assert "a new secret" not in result.output
    assert logs_in("ada@example.com", "a new secret")


def test_set_password_without_a_terminal_needs_password_stdin(env: dict[str, str]) -> None:
    create(env, "ada@example.com")
    completed = engage(env, "user", "set-password", "ada@example.com")
    assert_one_error_line(completed, "--password-stdin")
    assert logs_in("ada@example.com", PASSWORD)
