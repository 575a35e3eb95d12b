"""`engage key create | list | revoke` as an operator runs them, on real PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from support.cli import assert_one_error_line, cli_settings, engage


@pytest.fixture
def env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    environment = cli_settings(pg_url, tmp_path / "data", monkeypatch)
    with psycopg.connect(pg_url) as conn:
        conn.execute("TRUNCATE users CASCADE")
    for email in ("ada@example.com", "bob@example.com"):
        created = engage(
            environment, "user", "create", email, "--password-stdin", stdin="pw-12345678\n"
        )
        assert created.returncode == 0, created.stderr
    return environment


def test_a_created_key_is_printed_once_listed_and_revoked(env: dict[str, str], pg_url: str) -> None:
    created = engage(
        env, "key", "create", "ADA@example.com", "--name", "sensor",
        "--scope", "metrics:write", "--scope", "metrics:read",
        "--expires", "2099-01-01T00:00:00Z",
    )  # fmt: skip
    engage(env, "key", "create", "bob@example.com", "--name", "bob's", "--scope", "metrics:read")

    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert re.fullmatch(r"engk_[0-9a-f]{32}_[A-Za-z0-9_-]{40}", token)
    assert "shown only now" in created.stderr
    assert " for ada@example.com; " in created.stderr  # the account's address, as stored
    table = engage(env, "key", "list")
    assert table.returncode == 0
    assert token not in table.stdout
    header, *lines = table.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["ada@example.com", "bob@example.com"]
    for column in ("expires_at", "last_used_at"):  # each header over its values
        assert lines[0][header.index(column) - 2 : header.index(column)] == "  "
    [ada] = json.loads(engage(env, "key", "list", "ada@example.com", "--json").stdout)
    assert ada["scopes"] == ["metrics:read", "metrics:write"]
    assert ada["expires_at"] == "2099-01-01T00:00:00+00:00"
    assert token.startswith(ada["prefix"])

    revoked = engage(env, "key", "revoke", ada["id"])

    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == f"revoked key {ada['id']} (sensor)"
    assert json.loads(engage(env, "key", "list", "ada@example.com", "--json").stdout) == []
    with psycopg.connect(pg_url) as conn:
        kinds = conn.execute("SELECT kind FROM activity ORDER BY id").fetchall()
    assert [k for (k,) in kinds if k.startswith("api_key")] == [
        "api_key.created",
        "api_key.created",
        "api_key.revoked",
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("create", "nobody@example.com", "--name", "x", "--scope", "metrics:read"), "no user"),
        (("create", "not-an-email", "--name", "x", "--scope", "metrics:read"), "email"),
        (("create", "ada@example.com", "--name", "x", "--scope", "admin"), "scopes"),
        (("create", "ada@example.com", "--name", " ", "--scope", "metrics:read"), "name"),
        (
            (
                "create",
                "ada@example.com",
                "--name",
                "x",
                "--scope",
                "metrics:read",
                "--expires",
                "1999-01-01T00:00:00Z",
            ),
            "expires_at",
        ),
        (("list", "nobody@example.com"), "no user"),
        (("revoke", "not-an-id"), "no API key"),
        (("revoke", "0c9d1f1e-0000-4000-8000-000000000000"), "no API key"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    env: dict[str, str], args: tuple[str, ...], fragment: str
) -> None:
    assert_one_error_line(engage(env, "key", *args), fragment)
