"""`engage demo` as a newcomer runs it, next to a running `engage serve`, on PostgreSQL."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from engage_cli.demo_data import METRIC_TYPES
from support.cli import assert_one_error_line, cli_settings, engage
from support.mail import read_outbox, text_of
from support.serve import running_server

TABLES = "users, engagement_metrics, sessions, metric_rollups, idempotency_keys"
DEMO = "demo@example.com"
SIGN_IN = re.compile(
    r"Demo account (created|replaced): ([\d,]+) metrics? over (\d+) (day|days) \(seed (\d+)\)\.\n"
    r"Open (\S+) and sign in with\n"
    r"  email:    (\S+)\n"
    r"  password: (.+)\n"
)


@pytest.fixture(scope="module")
def server_env(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield cli_settings(pg_url, tmp_path_factory.mktemp("data"), monkeypatch)


@pytest.fixture(scope="module")
def server(server_env: dict[str, str]) -> Iterator[str]:
    """One `engage serve` for the module: the demo is made while it runs."""
    with running_server(server_env) as (_, base):
        yield base


@pytest.fixture
def env(server_env: dict[str, str], pg_url: str) -> dict[str, str]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return server_env


def run_demo(env: dict[str, str], *args: str, stdin: str | None = None) -> dict[str, str]:
    completed = engage(env, "demo", *args, stdin=stdin)
    assert completed.returncode == 0, completed.stderr
    match = SIGN_IN.fullmatch(completed.stdout)
    assert match is not None, completed.stdout
    action, metrics, days, unit, seed, url, email, password = match.groups()
    assert unit == ("day" if days == "1" else "days"), completed.stdout
    return {
        "action": action,
        "metrics": metrics.replace(",", ""),
        "days": days,
        "seed": seed,
        "url": url,
        "email": email,
        "password": password,
    }


def bearer(base: str, email: str, password: str) -> dict[str, str] | None:
    """The Authorization header of a token for these credentials, or None if refused."""
    answer = httpx.post(f"{base}/api/auth/token", json={"email": email, "password": password})
    if answer.status_code == 401:
        return None
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def stored(pg_url: str, email: str) -> dict[str, int]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT m.metric_type, count(*) FROM engagement_metrics m"
            " JOIN users u ON u.id = m.user_id WHERE u.email = %s GROUP BY 1",
            [email],
        ).fetchall()
    return dict(rows)


def test_the_printed_password_signs_in_to_a_dashboard_full_of_metrics(
    env: dict[str, str], server: str, pg_url: str
) -> None:
    made = run_demo(env, "--days", "60", "--seed", "3")
    assert made["action"] == "created"
    assert made["email"] == DEMO
    assert made["url"] == "http://127.0.0.1:8000/"
    assert (made["days"], made["seed"]) == ("60", "3")
    per_type = stored(pg_url, DEMO)
    assert set(per_type) == set(METRIC_TYPES)
    assert sum(per_type.values()) == int(made["metrics"]) > 3_000

    auth = bearer(server, DEMO, made["password"])
    assert auth is not None, "the printed password signs in"
    for bucket, at_least in (("hour", 60 * 24 * 3 // 4), ("day", 60), ("week", 8)):
        summary = httpx.get(
            f"{server}/api/dashboard/summary",
            params={"bucket": bucket, "metric_type": "page_view", "tz": "Europe/Berlin"},
            headers=auth,
        ).json()
        (series,) = summary["series"]
        assert len(series["points"]) >= at_least
        assert sum(p["count"] for p in series["points"]) == per_type["page_view"]
    page = httpx.get(f"{server}/api/dashboard/metrics", params={"limit": 5}, headers=auth).json()
    assert len(page["items"]) == 5
    assert page["next_cursor"] is not None


def test_running_it_again_replaces_the_account_without_doubling_rows(
    env: dict[str, str], server: str, pg_url: str
) -> None:
    first = run_demo(env, "--days", "20", "--seed", "5")
    second = run_demo(env, "--days", "20", "--seed", "5")
    assert (first["action"], second["action"]) == ("created", "replaced")
    assert sum(stored(pg_url, DEMO).values()) == int(second["metrics"])
    assert int(second["metrics"]) < 1.2 * int(first["metrics"])
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
        rollups = conn.execute("SELECT coalesce(sum(count), 0) FROM metric_rollups").fetchone()
    assert rollups == (int(second["metrics"]),), "the old account's rollups are gone too"
    assert bearer(server, DEMO, first["password"]) is None
    assert bearer(server, DEMO, second["password"]) is not None


def test_a_given_password_and_address_are_used(
    env: dict[str, str], server: str, pg_url: str
) -> None:
    from_stdin = run_demo(
        env, "--email", "Try@Example.com", "--days", "2", "--password-stdin",
        stdin="correct horse battery\n",
    )  # fmt: skip
    assert from_stdin["email"] == "Try@example.com"
    assert from_stdin["password"] == "correct horse battery"
    assert bearer(server, "try@example.com", "correct horse battery") is not None
    given = run_demo(env, "--days", "1", "--password", "another good one")
    assert bearer(server, DEMO, "another good one") is not None
    assert sum(stored(pg_url, DEMO).values()) == int(given["metrics"])


def test_the_address_to_sign_in_at_is_the_public_url_its_mail_links_use(
    env: dict[str, str], pg_url: str
) -> None:
    made = run_demo(
        {**env, "ENGAGE_PUBLIC_URL": "https://engage.example.test:9000/"}, "--days", "1"
    )
    assert made["url"] == "https://engage.example.test:9000/"
    # The running server may have sent it meanwhile (a sent mail keeps no link in the
    # table, its file in the outbox has it): wherever it is, it links there.
    link = "https://engage.example.test:9000/verify-email#token="
    outbox = Path(env["ENGAGE_DATA_DIR"]) / "outbox"
    deadline = time.monotonic() + 15
    while True:
        with psycopg.connect(pg_url) as conn:
            queued = conn.execute(
                "SELECT link FROM mail_outbox WHERE recipient = %s AND link IS NOT NULL",
                [DEMO],
            ).fetchall()
        sent = [text_of(m) for m in read_outbox(outbox)]
        if any(row[0].startswith(link) for row in queued) or any(link in m for m in sent):
            break
        assert time.monotonic() < deadline, (queued, len(sent))
        time.sleep(0.2)


def test_an_account_at_another_address_is_replaced_only_with_yes(
    env: dict[str, str], server: str, pg_url: str
) -> None:
    created = engage(env, "user", "create", "ada@example.com", "--password-stdin", stdin="p" * 12)
    assert created.returncode == 0, created.stderr
    refused = engage(env, "demo", "--email", "ada@example.com", "--days", "1")
    assert_one_error_line(refused, "ada@example.com already has an account", "--yes")
    assert bearer(server, "ada@example.com", "p" * 12) is not None
    replaced = run_demo(env, "--email", "ada@example.com", "--days", "1", "--yes")
    assert replaced["action"] == "replaced"
    assert bearer(server, "ada@example.com", "p" * 12) is None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--days", "0"], None, "--days must be from 1 to 3650"),
        (["--days", "3651"], None, "--days must be from 1 to 3650"),
        (["--email", "not-an-address"], None, "email is not a valid address"),
        (["--password", "short"], None, "password must be 8 to 256 characters"),
        (["--password", "long enough", "--password-stdin"], "x" * 9, "not both"),
        (["--password-stdin"], "", "stdin is empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_1_and_makes_nothing(
    env: dict[str, str], pg_url: str, args: list[str], stdin: str | None, message: str
) -> None:
    assert_one_error_line(engage(env, "demo", *args, stdin=stdin), message)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_a_days_that_is_no_number_is_a_usage_error(env: dict[str, str]) -> None:
    completed = engage(env, "demo", "--days", "a year")
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr


def test_help_says_what_it_does(env: dict[str, str]) -> None:
    completed = engage(env, "demo", "--help")
    assert completed.returncode == 0
    for option in ("--email", "--password-stdin", "--days", "--seed", "--yes"):
        assert option in completed.stdout
