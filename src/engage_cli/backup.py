"""`engage db backup` and `engage db restore`: verified pg_dump archives, whole restores."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from engage_adapters.bootstrap import database_url
from engage_adapters.postgres import backup as archives
from engage_adapters.settings import load_settings
from engage_cli import terminal
from engage_cli.errors import fail, reported_errors

DEFAULT_KEEP = 7


def backup(
    directory: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR",
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
        conninfo = database_url(settings)
        where = directory if directory is not None else settings.data_dir / "backups"
        written = archives.write_backup(conninfo, where, now=datetime.now(UTC))
    typer.echo(str(written.path))  # before pruning: the archive stands even if that fails
    with reported_errors():
        removed = archives.prune_backups(where, keep, spare=written.path)
    for path in removed:
        typer.echo(f"removed old backup {path}")


def restore(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="An archive from `engage db backup`.")
    ],
    yes: bool = typer.Option(False, "--yes", "-y", help="Restore without asking."),
) -> None:
    """Replace everything in the database with FILE's contents.

    All or nothing: pg_restore runs in one transaction, so a failed restore
    leaves the database as it was. Asks first unless --yes.
    """
    with reported_errors():
        tools = archives.find_tools()
        contents = archives.require_engage_archive(file, tools)
        if not yes and not terminal.stdin_is_terminal():
            fail("refusing to restore without confirmation: pass --yes")
        conninfo = database_url(load_settings())
        target = archives.describe_target(conninfo)
        question = (
            f"Replace everything in {target} with {file} (made {contents.created_at})? "
            "Data written since then is lost"
        )
        if not yes and not typer.confirm(question, default=False):
            fail("restore cancelled; nothing was changed")
        contents, tables = archives.restore_backup(conninfo, file, tools=tools)
    typer.echo(
        f"restored {file} (made {contents.created_at} from database {contents.database}) "
        f"into {target}"
    )
    for table in tables:
        typer.echo(f"  {table.name}: {table.rows} row{'' if table.rows == 1 else 's'}")
