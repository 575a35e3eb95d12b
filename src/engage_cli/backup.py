"""`engage db backup`, `restore` and `verify`: verified pg_dump archives, whole restores, drills."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from engage_adapters.bootstrap import (
    Database,
    DrillReport,
    SharedCacheUnreachable,
    find_tools,
    forget_shared_cache,
    newest_backup,
    prune_backups,
    require_engage_archive,
    verify_backup,
)
from engage_adapters.settings import Settings, load_settings
from engage_cli import terminal
from engage_cli.errors import fail, reported_errors

DEFAULT_KEEP = 7


def default_directory(settings: Settings) -> Path:
    """Where `engage db backup` writes and `engage db verify` looks without a DIR."""
    return settings.data_dir / "backups"


def backup(
    directory: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR",
            readable=False,
            show_default=False,
            help="Where to write the archive (default: ENGAGE_DATA_DIR/backups).",
        ),
    ] = None,
    keep: int = typer.Option(
        DEFAULT_KEEP, "--keep", min=1, help="How many engage-*.dump archives to keep in DIR."
    ),
) -> None:
    """Write a pg_dump archive of the database, verify it, keep the newest N.

    The archive is DIR/engage-YYYYmmddTHHMMSSZ.dump (UTC, mode 0600), written
    under a temporary name and renamed once `pg_restore --list` reads it.
    Prints its path, then the old archives it removed. Safe to run while
    `engage serve` is running.
    """
    with reported_errors():
        settings = load_settings()
        database = Database.of(settings)
        where = directory if directory is not None else default_directory(settings)
        written = database.back_up(where, now=datetime.now(UTC))
    typer.echo(str(written.path))  # before pruning: the archive stands even if that fails
    with reported_errors():
        removed = prune_backups(where, keep, spare=written.path)
    for path in removed:
        typer.echo(f"removed old backup {path}")


def restore(
    file: Annotated[
        # readable=False: an unreadable FILE is an error of ours (exit 1), not a usage one.
        Path,
        typer.Argument(metavar="FILE", readable=False, help="An archive from `engage db backup`."),
    ],
    yes: bool = typer.Option(False, "--yes", "-y", help="Restore without asking."),
) -> None:
    """Replace everything in the database with FILE's contents.

    All or nothing: pg_restore runs in one transaction, so a failed restore
    leaves the database as it was. Asks first unless --yes. With
    ENGAGE_REDIS_URL, then clears Redis's cache (moves its epochs on), so no
    process serves what was cached before the restore; if Redis cannot be
    reached, the restore stands, and it says so and exits 1.
    """
    with reported_errors():
        tools = find_tools()
        contents = require_engage_archive(file, tools)
        if not yes and not terminal.stdin_is_terminal():
            fail("refusing to restore without confirmation: pass --yes")
        settings = load_settings()
        database = Database.of(settings)
        target = database.describe()
        question = (
            f"Replace everything in {target} with {file} (made {contents.created_at})? "
            "Data written since then is lost"
        )
        if not yes and not typer.confirm(question, default=False):
            fail("restore cancelled; nothing was changed")
        contents, tables = database.restore(file, tools=tools)
    typer.echo(
        f"restored {file} (made {contents.created_at} from database {contents.database}) "
        f"into {target}"
    )
    for table in tables:
        typer.echo(f"  {table.name}: {table.rows} row{'' if table.rows == 1 else 's'}")
    try:
        cleared = asyncio.run(forget_shared_cache(settings))
    except SharedCacheUnreachable as exc:
        fail(
            f"the database is restored, but Redis (ENGAGE_REDIS_URL) could not be reached to "
            f"clear its cache ({exc.reason}): engage serve may answer sessions and dashboards "
            "from before the restore (for up to 5 minutes) until it is cleared; once Redis "
            "answers, run this restore again or flush Redis, before starting engage serve"
        )
    if cleared:
        typer.echo("cleared the cache in Redis: nothing cached before the restore is served")


def verify(
    backup: Annotated[
        Path | None,
        typer.Argument(
            metavar="BACKUP",
            readable=False,
            show_default=False,
            help="An archive, or a folder whose newest engage-*.dump is checked "
            "(default: the newest in ENGAGE_DATA_DIR/backups).",
        ),
    ] = None,
    scratch_dir: Annotated[
        Path | None,
        typer.Option(
            "--scratch-dir",
            metavar="DIR",
            show_default=False,
            help="Where the scratch server's temporary directory goes, with room for a "
            "restored copy of the database (default: $TMPDIR or /tmp).",
        ),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Restore drill: prove a backup restores, in a scratch server.

    Restores BACKUP into a new embedded PostgreSQL in a temporary directory
    (never the live database, so it runs while `engage serve` does), applies
    this version's migrations, checks every table's row count against the
    rows in the archive and the rollups against a recomputation from the raw
    metrics, prints a report and removes the scratch server. Exit 0 if all
    matches; 1 with one error line on a mismatch or an unreadable archive.
    Nightly: `engage db backup && engage db verify`.
    """
    with reported_errors(), _stopped_by_sigterm():
        if backup is None:
            path = newest_backup(default_directory(load_settings()))
        else:
            path = newest_backup(backup) if backup.is_dir() else backup
        report = verify_backup(path, scratch_parent=scratch_dir)
    typer.echo(json.dumps(_report_json(report)) if as_json else _report_text(report))
    if not report.ok:
        fail(f"{path} failed the restore drill: {'; '.join(report.faults)}")


def _report_text(report: DrillReport) -> str:
    contents = report.archive
    lines = [
        f"verified {contents.path} (made {contents.created_at} from database "
        f"{contents.database}) in a scratch server"
    ]
    for table in report.tables:
        rows = f"{table.restored} row{'' if table.restored == 1 else 's'}"
        lines.append(
            f"  {table.name}: {rows}" + ("" if table.ok else f", archive {table.archived}")
        )
    applied = ", ".join(report.migrations_applied) or "none pending"
    lines.append(f"migrations applied: {applied}")
    rollups = report.rollups
    if rollups.ok:
        lines.append(f"rollups: all {rollups.buckets} slots match the raw metrics")
    else:
        lines.append(f"rollups: {rollups.differing} of {rollups.buckets} slots differ")
    lines.append(f"took {report.seconds:.1f} s")
    return "\n".join(lines)


def _report_json(report: DrillReport) -> dict[str, object]:
    contents = report.archive
    return {
        "archive": str(contents.path),
        "created_at": contents.created_at,
        "database": contents.database,
        "ok": report.ok,
        "tables": [
            {"name": t.name, "rows": t.restored, "archived_rows": t.archived, "ok": t.ok}
            for t in report.tables
        ],
        "migrations_applied": list(report.migrations_applied),
        "rollups": {
            "slots": report.rollups.buckets,
            "differing": report.rollups.differing,
            "first_difference": report.rollups.first_difference,
            "ok": report.rollups.ok,
        },
        "faults": report.faults,
        "seconds": round(report.seconds, 3),
    }


@contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """A SIGTERM (systemd stopping the timer's unit) unwinds, so the scratch server is removed."""

    def stop(signum: int, frame: object) -> None:
        sys.exit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
