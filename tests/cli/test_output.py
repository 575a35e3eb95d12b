"""What the commands print, wherever it goes: a pipe closed early, a full disk, a
FIFO or a symlink named with `-o`; run as an operator runs them, on real PostgreSQL."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psycopg
import pytest

from support.cli import assert_one_error_line, cli_settings, engage, engage_read_one_line

HEADER = "email,metric_type,metric_value,recorded_at"
ROW = "ada@example.com,views,1.5,2026-01-01T00:00:00+00:00"


@pytest.fixture
def env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    environment = cli_settings(pg_url, tmp_path / "data", monkeypatch)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE users, engagement_metrics, sessions, metric_rollups, activity, api_keys,"
            " mail_outbox CASCADE"
        )
        conn.execute(
            "INSERT INTO users (id, email, email_key, password_hash)"
            " VALUES (gen_random_uuid(), 'ada@example.com', 'ada@example.com', 'x')"
        )
    return environment


def _fill_every_listing(pg_url: str) -> None:
    """Far more than a pipe holds (64 KiB) in each listing."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO activity (user_id, email, kind, at, ip, user_agent)"
            " SELECT id, email, 'login.failed', now() - n * interval '1 second', '203.0.113.5',"
            " 'Mozilla/5.0 Firefox/133.0' FROM users, generate_series(1, 3000) AS n"
        )
        conn.execute(
            "INSERT INTO api_keys (id, user_id, name, secret_hash, scopes, created_at)"
            " SELECT gen_random_uuid(), id, 'key ' || n, repeat('0', 64), ARRAY['metrics:read'],"
            " now() FROM users, generate_series(1, 1500) AS n"
        )
        conn.execute(
            "INSERT INTO mail_outbox (id, recipient, subject, text_body, html_body, status,"
            " created_at, next_attempt_at)"
            " SELECT gen_random_uuid(), 'ada@example.com', 'A subject of some length ' || n,"
            " 'body', '<p>body</p>', 'queued', now(), now() FROM generate_series(1, 2000) AS n"
        )


@pytest.mark.parametrize(
    "command",
    [
        ["activity"],
        ["activity", "--json"],
        ["key", "list"],
        ["mail", "outbox", "--limit", "2000"],
        ["mail", "outbox", "--limit", "2000", "--json"],
    ],
)
def test_a_listing_cut_short_by_its_reader_ends_quietly_in_success(
    env: dict[str, str], pg_url: str, command: list[str]
) -> None:
    _fill_every_listing(pg_url)
    code, errors = engage_read_one_line(env, *command)

    assert code == 0, errors
    assert b"Traceback" not in errors


def _with_a_full_disk() -> None:
    """In the child: no file may grow (as on a full disk), and growing one is an error
    (EFBIG), not the SIGXFSZ that would kill the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _on_a_full_disk(
    env: dict[str, str], *args: str, stdout: IO[str] | int = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """The real command, run where no file may grow."""
    return subprocess.run(
        [sys.executable, "-m", "engage_cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_with_a_full_disk,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command",
    [["settings", "list"], ["db", "status"], ["key", "list"], ["user", "list"]],
)
def test_output_onto_a_full_disk_is_one_line_and_exit_1(
    env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    with (tmp_path / "out.txt").open("w") as out:
        completed = _on_a_full_disk(env, *command, stdout=out)
    assert completed.returncode == 1, completed.stderr
    assert completed.stderr == "engage: error: cannot write the output: File too large\n"


def test_an_export_onto_a_full_disk_is_one_line_and_leaves_no_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "out.csv"
    completed = _on_a_full_disk(env, "metrics", "export", "-o", str(target))
    assert_one_error_line(completed, "cannot write the output: File too large")
    assert not target.exists()
    assert list(tmp_path.glob(".out.csv.*")) == []


def _load_one_metric(env: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "one.csv"
    file.write_text(f"{HEADER}\n{ROW}\n")
    loaded = engage(env, "metrics", "backfill", str(file))
    assert loaded.returncode == 0, loaded.stderr


def test_an_export_through_a_symlink_writes_its_target_and_keeps_the_link(
    env: dict[str, str], tmp_path: Path
) -> None:
    _load_one_metric(env, tmp_path)
    (tmp_path / "exports").mkdir()
    target = tmp_path / "exports" / "latest.csv"
    target.write_text("the previous export\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)

    completed = engage(env, "metrics", "export", "-o", str(link))

    assert completed.returncode == 0, completed.stderr
    assert link.is_symlink()
    assert target.read_text() == f"{HEADER}\n{ROW}\n"


def test_an_export_into_a_fifo_writes_into_it(env: dict[str, str], tmp_path: Path) -> None:
    _load_one_metric(env, tmp_path)
    fifo = tmp_path / "metrics.fifo"
    os.mkfifo(fifo)
    # Opened for reading first, without waiting, so the command's open does not block.
    reading = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        completed = engage(env, "metrics", "export", "-o", str(fifo))
        received = os.read(reading, 65536)
    finally:
        os.close(reading)

    assert completed.returncode == 0, completed.stderr
    assert fifo.is_fifo()
    assert received.decode() == f"{HEADER}\n{ROW}\n"


@pytest.mark.parametrize(
    "bounds",
    [
        ["--since", "1969-01-01T00:00:00Z"],
        ["--since", "0001-01-01T00:00:00+05:00", "--until", "9999-12-31T23:59:59-05:00"],
        ["--until", "2999-01-01T00:00:00Z"],
    ],
)
def test_export_takes_any_moment_as_a_bound_as_the_api_does(
    env: dict[str, str], tmp_path: Path, bounds: list[str]
) -> None:
    _load_one_metric(env, tmp_path)

    completed = engage(env, "metrics", "export", *bounds)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"{HEADER}\n{ROW}\n"
    assert completed.stderr == "exported 1 metric\n"  # counted in the singular


@pytest.mark.parametrize(
    ("bound", "message"),
    [
        ("2026-01-01T00:00:00", "--since must carry a UTC offset (such as Z or +02:00)"),
        ("yesterday", "--since must be an ISO 8601 date-time with a UTC offset"),
    ],
)
def test_a_bad_export_bound_says_what_is_wrong_with_it(
    env: dict[str, str], bound: str, message: str
) -> None:
    assert_one_error_line(engage(env, "metrics", "export", "--since", bound), message)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_backfill_stopped_by_a_signal_loads_nothing_and_lets_the_embedded_server_stop(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """No ENGAGE_DATABASE_URL: a load killed as systemd or `timeout` kills it, or by
    its terminal closing, unwinds as Ctrl-C does, so its hold on the embedded server
    ends with it."""
    data = tmp_path / "d"
    env = {
        "PATH": "/usr/bin:/bin",
        "ENGAGE_DATA_DIR": str(data),
        "ENGAGE_JWT_SECRET": "a-test-secret-that-is-long-enough-0123456789",
        "ENGAGE_ENCRYPTION_KEY": "a-test-encryption-key-that-is-long-enough-0123456789",
        "ENGAGE_BCRYPT_ROUNDS": "4",
    }
    created = engage(
        env, "user", "create", "ada@example.com", "--password-stdin", stdin="pw-12345678\n"
    )
    assert created.returncode == 0, created.stderr
    try:
        _stop_a_backfill(env, data, stop)
    finally:  # a server the command failed to let go of is stopped here
        postmaster = data / "postgres" / "postmaster.pid"
        if postmaster.exists():
            os.kill(int(postmaster.read_text().split()[0]), signal.SIGINT)


def _stop_a_backfill(env: dict[str, str], data: Path, stop: signal.Signals) -> None:
    holders = data / "postgres" / ".handle_pids.json"
    loading = subprocess.Popen(
        [sys.executable, "-m", "engage_cli", "metrics", "backfill", "-"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert loading.stdin is not None
    loading.stdin.write(f"{HEADER}\n" + f"{ROW}\n" * 1000)
    loading.stdin.flush()  # and kept open: the load waits for the rest
    deadline = time.monotonic() + 60
    while str(loading.pid) not in (holders.read_text() if holders.exists() else ""):
        assert time.monotonic() < deadline, "the load never reached the server"
        time.sleep(0.1)
    time.sleep(1)

    loading.send_signal(stop)
    _, errors = loading.communicate(timeout=60)

    assert loading.returncode == 128 + stop, errors
    assert "Traceback" not in errors
    assert str(loading.pid) not in holders.read_text()
    exported = engage(env, "metrics", "export")
    assert exported.stdout == f"{HEADER}\n"  # nothing of the load was stored
    assert not (data / "postgres" / "postmaster.pid").exists()  # the last one out stopped it
