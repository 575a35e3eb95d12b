"""`engage mail outbox | retry` as an operator runs them, on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
import pytest

from engage_adapters.bootstrap import build_services
from engage_adapters.settings import load_settings
from support.cli import cli_settings, engage

PASSWORD = "correct horse battery"


@pytest.fixture
def env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("TRUNCATE users, mail_outbox CASCADE")
    return cli_settings(pg_url, tmp_path / "data", monkeypatch)


def sign_up(*emails: str) -> None:
    """Sign up through the services (each queues a verification mail; no sender runs)."""

    async def work() -> None:
        async with build_services(load_settings()) as services:
            for email in emails:
                await services.auth.sign_up(email=email, password=PASSWORD)

    asyncio.run(work())


def test_the_outbox_lists_queued_mail_newest_first(env: dict[str, str]) -> None:
    sign_up("ada@example.com", "bob@example.com")
    listed = engage(env, "mail", "outbox", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["to"], r["status"], r["attempts"]) for r in rows] == [
        ("bob@example.com", "queued", 0),
        ("ada@example.com", "queued", 0),
    ]
    assert rows[0]["subject"] == "Verify your email address for engage-suite"
    table = engage(env, "mail", "outbox")
    assert table.returncode == 0, table.stderr
    assert table.stdout.index("bob@example.com") < table.stdout.index("ada@example.com")


def test_an_empty_outbox_says_so(env: dict[str, str]) -> None:
    listed = engage(env, "mail", "outbox")
    assert (listed.returncode, listed.stdout) == (0, "the outbox is empty\n")


def test_retry_queues_the_failed_mail_again(env: dict[str, str], pg_url: str) -> None:
    sign_up("ada@example.com", "bob@example.com")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE mail_outbox SET status = 'failed', attempts = 12, last_error = '550 no'"
            " WHERE recipient = 'ada@example.com'"
        )
    failed = engage(env, "mail", "outbox")
    assert "failed" in failed.stdout
    assert "550 no" in failed.stdout
    retried = engage(env, "mail", "retry")
    assert (retried.returncode, retried.stdout) == (0, "1 failed message queued again\n")
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT status, attempts FROM mail_outbox").fetchall()
    assert rows == [("queued", 0), ("queued", 0)]
    again = engage(env, "mail", "retry")
    assert again.stdout == "0 failed messages queued again\n"
