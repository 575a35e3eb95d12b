"""`engage db backup` and `engage db restore` on real PostgreSQL: a backup restores every row."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

from engage_adapters.bootstrap import build_services
from engage_adapters.postgres import backup as archives
from engage_adapters.postgres import migrate
from engage_adapters.settings import load_settings
from engage_cli import terminal
from engage_cli.main import app
from engage_core import Unauthorized
from engage_core.ports import StoredResponse
from support.cli import assert_one_error_line, cli_settings, engage

PASSWORD = "correct horse battery"
ARCHIVE = re.compile(r"engage-\d{8}T\d{6}Z\.dump")
# Every table, the migrations' own record included.
TABLES = (
    "users",
    "engagement_metrics",
    "sessions",
    "metric_rollups",
    "idempotency_keys",
    "schema_migrations",
)

# Constraints, indexes, triggers and functions: a restore must not lose any of them.
SCHEMA_OBJECTS = """
SELECT count(*), md5(string_agg(name, ',' ORDER BY name)) FROM (
    SELECT format('constraint %s.%s', conrelid::regclass, conname) FROM pg_constraint
     WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT format('index %s', indexname) FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL
    SELECT format('trigger %s.%s', tgrelid::regclass, tgname) FROM pg_trigger
     WHERE NOT tgisinternal
    UNION ALL
    SELECT format('function %s', oid::regprocedure) FROM pg_proc
     WHERE pronamespace = 'public'::regnamespace
) AS objects (name)
"""
Snapshot = dict[str, tuple[object, ...]]


@pytest.fixture
def env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A freshly migrated, empty database of this module's, and the settings to reach it."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    asyncio.run(migrate.upgrade(pg_url))
    return cli_settings(pg_url, tmp_path / "data", monkeypatch)


def snapshot(pg_url: str) -> Snapshot:
    """Row count and a checksum of every table, and the metric id sequence."""
    taken: Snapshot = {}
    with psycopg.connect(pg_url) as conn:
        for table in TABLES:
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                "FROM {} AS t"
            ).format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            assert row is not None
            taken[table] = tuple(row)
        sequence = conn.execute("SELECT last_value, is_called FROM engagement_metrics_id_seq")
        taken["engagement_metrics_id_seq"] = tuple(sequence.fetchone() or ())
        taken["schema"] = tuple(conn.execute(SCHEMA_OBJECTS).fetchone() or ())
    return taken


async def _seed() -> None:
    """Users, sessions, metrics (and so rollups) and an idempotency key, through the services."""
    async with build_services(load_settings()) as services:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
        for n, email in enumerate(("ada@example.com", "Bob@example.com", "carol@example.com")):
            user = await services.admin.create_user(email=email, password=PASSWORD)
            await services.auth.log_in(email=email, password=PASSWORD)
            items = [
                {
                    "metric_type": ("views", "clicks")[i % 2],
                    "metric_value": f"{i * (n + 1)}.25",
                    "recorded_at": (start + timedelta(minutes=7 * i)).isoformat(),
                }
                for i in range(200)
            ]
            await services.metrics.record_batch(user.id, items)
            await services.metrics.record(user.id, metric_type="signup", metric_value=Decimal(1))

            async def respond() -> StoredResponse:
                return StoredResponse(status=201, body=b'{"inserted": 1}')

            await services.idempotency.run(
                user_id=user.id, key=f"key-{n}", request_fingerprint="f" * 64, action=respond
            )


def seed(env: dict[str, str]) -> None:
    created = engage(env, "user", "create", "dave@example.com", "--password-stdin", stdin=PASSWORD)
    assert created.returncode == 0, created.stderr
    asyncio.run(_seed())


def write_backup(env: dict[str, str], *args: str) -> Path:
    completed = engage(env, "db", "backup", *args)
    assert completed.returncode == 0, completed.stderr
    path = Path(completed.stdout.splitlines()[0])
    assert ARCHIVE.fullmatch(path.name)
    return path


def test_a_backup_restores_every_row_after_everything_was_dropped(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    seed(env)
    before = snapshot(pg_url)
    assert before["metric_rollups"][0] > 0
    assert before["schema_migrations"][0] >= 1
    assert before["idempotency_keys"][0] == 3

    path = write_backup(env)
    assert path.parent == tmp_path / "data" / "backups"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds password hashes
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)

    restored = engage(env, "db", "restore", str(path), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"restored {path}")
    assert f"  users: {before['users'][0]} rows" in restored.stdout
    assert f"  metric_rollups: {before['metric_rollups'][0]} rows" in restored.stdout
    assert snapshot(pg_url) == before

    # The schema came back whole: triggers keep rollups in step, ids continue.
    asyncio.run(_record_one_more())
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(
            "SELECT (SELECT count(*) FROM engagement_metrics),"
            " (SELECT sum(count) FROM metric_rollups),"
            " (SELECT sum(metric_value) FROM engagement_metrics)"
            " = (SELECT sum(sum) FROM metric_rollups)"
        ).fetchone() == (
            before["engagement_metrics"][0] + 1,
            before["engagement_metrics"][0] + 1,
            True,
        )
    state = asyncio.run(migrate.status(pg_url))
    assert not state.pending
    assert not state.changed


async def _record_one_more() -> None:
    async with build_services(load_settings()) as services:
        user = await services.admin.find("ada@example.com")
        await services.metrics.record(user.id, metric_type="views", metric_value=Decimal(5))


def test_restore_over_a_changed_database_brings_back_the_backup(
    env: dict[str, str], pg_url: str
) -> None:
    seed(env)
    before = snapshot(pg_url)
    path = write_backup(env)
    deleted = engage(env, "user", "delete", "ada@example.com", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    engage(env, "user", "create", "eve@example.com", "--password-stdin", stdin=PASSWORD)
    assert snapshot(pg_url) != before
    restored = engage(env, "db", "restore", str(path), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_url) == before


def test_restore_refuses_a_file_that_is_not_an_archive(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    seed(env)
    before = snapshot(pg_url)
    garbage = tmp_path / "engage-20250101T000000Z.dump"
    garbage.write_bytes(b"PGDMP but not really\n" * 100)
    completed = engage(env, "db", "restore", str(garbage), "--yes")
    assert_one_error_line(completed, "is not a valid backup", "pg_restore")
    assert snapshot(pg_url) == before


def test_restore_refuses_a_missing_file(env: dict[str, str], tmp_path: Path) -> None:
    completed = engage(env, "db", "restore", str(tmp_path / "nothing.dump"), "--yes")
    assert_one_error_line(completed, "no such file")


def test_restore_and_verify_of_an_unreadable_file_are_one_error_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    unreadable = tmp_path / "locked.dump"
    unreadable.write_bytes(b"PGDMP")
    unreadable.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root reads anything: run without that power
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run as a root without CAP_DAC_OVERRIDE")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    for args in (["restore", str(unreadable), "--yes"], ["verify", str(unreadable)]):
        completed = subprocess.run(
            [*prefix, sys.executable, "-m", "engage_cli", "db", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert_one_error_line(completed, "Permission denied")


def test_restore_refuses_an_archive_of_another_database(
    env: dict[str, str], pg_url: str, pg_server_url: str, tmp_path: Path
) -> None:
    seed(env)
    before = snapshot(pg_url)
    # A valid pg_dump archive, of the server's `postgres` database (no engage tables).
    foreign = archives.write_backup(pg_server_url, tmp_path / "other", now=datetime.now(UTC))
    completed = engage(env, "db", "restore", str(foreign.path), "--yes")
    assert_one_error_line(completed, "not an engage backup")
    assert snapshot(pg_url) == before


def test_restore_without_yes_and_without_a_terminal_refuses(
    env: dict[str, str], pg_url: str
) -> None:
    seed(env)
    path = write_backup(env)
    engage(env, "user", "delete", "ada@example.com", "--yes")
    before = snapshot(pg_url)
    completed = engage(env, "db", "restore", str(path))
    assert_one_error_line(completed, "pass --yes")
    assert snapshot(pg_url) == before


def test_restore_on_a_terminal_asks_first(
    env: dict[str, str], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(env)
    backed_up = snapshot(pg_url)
    path = write_backup(env)
    engage(env, "user", "delete", "ada@example.com", "--yes")
    changed = snapshot(pg_url)
    monkeypatch.setattr(terminal, "stdin_is_terminal", lambda: True)
    runner = CliRunner()

    declined = runner.invoke(app, ["db", "restore", str(path)], input="n\n")
    assert declined.exit_code == 1
    assert "Replace everything in database" in declined.output
    assert declined.stderr == "engage: error: restore cancelled; nothing was changed\n"
    assert snapshot(pg_url) == changed

    accepted = runner.invoke(app, ["db", "restore", str(path)], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert snapshot(pg_url) == backed_up


def test_a_failed_restore_changes_nothing(env: dict[str, str], pg_url: str) -> None:
    seed(env)
    path = write_backup(env)
    engage(env, "user", "create", "eve@example.com", "--password-stdin", stdin=PASSWORD)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # Something the archive does not know depends on its tables: dropping them fails.
        conn.execute("CREATE TABLE audit (user_id uuid REFERENCES users (id))")
    before = snapshot(pg_url)
    completed = engage(env, "db", "restore", str(path), "--yes")
    assert_one_error_line(completed, "pg_restore: could not execute query")
    assert snapshot(pg_url) == before


def test_backup_keeps_the_newest_n_archives(env: dict[str, str], tmp_path: Path) -> None:
    directory = tmp_path / "backups"
    directory.mkdir()
    old = [directory / f"engage-2020010{day}T030000Z.dump" for day in range(1, 6)]
    others = [directory / "engage-before-upgrade.dump", directory / "notes.txt"]
    for path in old + others:
        path.write_bytes(b"x")

    completed = engage(env, "db", "backup", str(directory), "--keep", "3")
    assert completed.returncode == 0, completed.stderr
    first, *removals = completed.stdout.splitlines()
    written = Path(first)
    remaining = sorted(p.name for p in directory.iterdir())
    assert remaining == sorted([written.name, old[4].name, old[3].name] + [p.name for p in others])
    assert removals == [f"removed old backup {path}" for path in reversed(old[:3])]
    assert completed.stderr == ""


def test_backup_keeps_seven_by_default(env: dict[str, str], tmp_path: Path) -> None:
    directory = tmp_path / "backups"
    directory.mkdir()
    for day in range(1, 10):
        (directory / f"engage-202001{day:02d}T030000Z.dump").write_bytes(b"x")
    written = write_backup(env, str(directory))
    remaining = sorted(p.name for p in directory.iterdir())
    assert len(remaining) == 7
    assert remaining[-1] == written.name
    assert remaining[0] == "engage-20200104T030000Z.dump"


def test_backup_refuses_keep_zero_as_a_usage_error(env: dict[str, str]) -> None:
    assert engage(env, "db", "backup", "--keep", "0").returncode == 2


def test_a_backup_into_a_file_says_it_is_not_a_directory(
    env: dict[str, str], tmp_path: Path
) -> None:
    taken = tmp_path / "backups"
    taken.write_text("not a directory")

    completed = engage(env, "db", "backup", str(taken))

    assert_one_error_line(completed, f"{taken} is not a directory")
    assert taken.read_text() == "not a directory"


def test_a_failed_backup_leaves_no_file(env: dict[str, str], pg_url: str, tmp_path: Path) -> None:
    params = conninfo_to_dict(pg_url)
    missing = pg_url.replace(f"/{params['dbname']}?", "/engage_no_such_database?")
    assert missing != pg_url
    directory = tmp_path / "backups"
    completed = engage({**env, "ENGAGE_DATABASE_URL": missing}, "db", "backup", str(directory))
    assert_one_error_line(completed, "pg_dump:", "engage_no_such_database")
    assert list(directory.iterdir()) == []


def test_backup_and_restore_of_the_embedded_default_database(tmp_path: Path) -> None:
    """No ENGAGE_DATABASE_URL: the embedded server under the data dir (Unix socket, user
    postgres) is backed up and restored by the embedded package's own pg_dump and pg_restore."""
    env = {
        "PATH": "/usr/bin:/bin",
        "ENGAGE_DATA_DIR": str(tmp_path / "d"),
        "ENGAGE_JWT_SECRET": "a-test-secret-that-is-long-enough-0123456789",
        "ENGAGE_BCRYPT_ROUNDS": "4",
    }
    created = engage(env, "user", "create", "ada@example.com", "--password-stdin", stdin=PASSWORD)
    assert created.returncode == 0, created.stderr
    path = write_backup(env)
    assert path.parent == tmp_path / "d" / "backups"
    assert engage(env, "user", "delete", "ada@example.com", "--yes").returncode == 0
    restored = engage(env, "db", "restore", str(path), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "  users: 1 row\n" in restored.stdout
    listed = engage(env, "user", "list")
    assert created.stdout.strip() in listed.stdout


def test_of_two_backups_in_the_same_second_one_is_written_and_the_other_fails(
    pg_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other one finishes while this one checks its archive: this one must
    not replace it, and says so."""
    now = datetime.now(UTC)
    taken = tmp_path / archives.archive_name(now)
    checked = archives.read_archive

    def other_finished_meanwhile(path: Path, tools: archives.PgTools | None = None) -> Any:
        contents = checked(path, tools)
        taken.write_bytes(b"the other backup")
        return contents

    monkeypatch.setattr(archives, "read_archive", other_finished_meanwhile)
    with pytest.raises(archives.BackupError, match="already exists"):
        archives.write_backup(pg_server_url, tmp_path, now=now)
    assert taken.read_bytes() == b"the other backup"
    assert [p.name for p in tmp_path.iterdir()] == [taken.name]  # no partial file left


async def _cache_what_the_backup_will_not_hold() -> str:
    """Ada's dashboard (one metric at the backup, two after it) and a session made
    after the backup, each cached in Redis; that session's access token."""
    async with build_services(load_settings()) as services:
        ada = await services.admin.find("ada@example.com")
        await services.metrics.record(ada.id, metric_type="views", metric_value=Decimal(2))
        assert len((await services.metrics.list(ada.id)).items) == 2  # cached
        assert (await services.metrics.summary(ada.id)).series[0].points[0].sum == 3
        login = await services.auth.log_in(email="ada@example.com", password=PASSWORD)
        await services.auth.authenticate(login.access_token)  # "live" cached
        return login.access_token


async def _seen_after_the_restore(token: str) -> tuple[int, object, bool]:
    """What a process started after the restore serves: Ada's metric count and
    views, and whether the session made after the backup is still let in."""
    async with build_services(load_settings()) as services:
        ada = await services.admin.find("ada@example.com")
        count = len((await services.metrics.list(ada.id)).items)
        views = (await services.metrics.summary(ada.id)).series[0].points[0].sum
        try:
            await services.auth.authenticate(token)
        except Unauthorized:
            return count, views, False
        return count, views, True


async def _one_metric_for_ada() -> None:
    async with build_services(load_settings()) as services:
        ada = await services.admin.create_user(email="ada@example.com", password=PASSWORD)
        await services.metrics.record(ada.id, metric_type="views", metric_value=Decimal(1))


@pytest.mark.parametrize("redis", ["fresh_redis_url", "redis_cluster_url"])
def test_a_restore_clears_the_cache_in_redis(
    env: dict[str, str],
    redis: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On one Redis and on a cluster, whose shards' epochs live on several nodes."""
    url: str = request.getfixturevalue(redis)
    monkeypatch.setenv("ENGAGE_REDIS_URL", url)
    env = {**env, "ENGAGE_REDIS_URL": url}
    asyncio.run(_one_metric_for_ada())
    path = write_backup(env)
    token = asyncio.run(_cache_what_the_backup_will_not_hold())

    restored = engage(env, "db", "restore", str(path), "--yes")

    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.splitlines()[-1] == (
        "cleared the cache in Redis: nothing cached before the restore is served"
    )
    assert asyncio.run(_seen_after_the_restore(token)) == (1, 1, False)


def test_a_restore_says_so_when_it_could_not_clear_the_cache(
    env: dict[str, str], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(env)
    before = snapshot(pg_url)
    path = write_backup(env)
    engage(env, "user", "create", "eve@example.com", "--password-stdin", stdin=PASSWORD)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        unreachable = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    env = {**env, "ENGAGE_REDIS_URL": unreachable}

    restored = engage(env, "db", "restore", str(path), "--yes")

    assert restored.returncode == 1
    assert restored.stdout.startswith(f"restored {path}")  # the restore stands
    assert "cleared the cache" not in restored.stdout
    assert restored.stderr.startswith("engage: error: the database is restored, but Redis")
    assert restored.stderr.count("\n") == 1, restored.stderr
    assert "could not be reached to clear its cache" in restored.stderr
    assert "Traceback" not in restored.stderr
    assert snapshot(pg_url) == before


def test_a_restore_without_redis_says_nothing_of_a_cache(env: dict[str, str]) -> None:
    seed(env)
    path = write_backup(env)
    restored = engage(env, "db", "restore", str(path), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "cache" not in restored.stdout
