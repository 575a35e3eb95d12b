"""`engage db`: the schema, backups, restores and restore drills."""

from __future__ import annotations

import asyncio

import typer

from engage_adapters.bootstrap import Database
from engage_adapters.settings import load_settings
from engage_cli import backup
from engage_cli.errors import reported_errors

app = typer.Typer(
    help="Database: schema upgrade and status, backup, restore and the restore drill.",
    no_args_is_help=True,
)


@app.command()
def upgrade() -> None:
    """Apply pending migrations (safe to run from several processes at once)."""
    with reported_errors():
        applied = asyncio.run(Database.of(load_settings()).upgrade())
    if applied:
        for migration in applied:
            typer.echo(f"applied {migration.filename}")
    else:
        typer.echo("schema is up to date")


@app.command()
def status() -> None:
    """List applied and pending migrations."""
    with reported_errors():
        state = asyncio.run(Database.of(load_settings()).schema_status())
    changed = {m.version for m in state.changed}
    for applied in state.applied:
        mark = "changed since applied!" if applied.version in changed else ""
        stamp = applied.applied_at.isoformat(timespec="seconds")
        typer.echo(f"applied  {applied.version:04d}_{applied.name}  {stamp}  {mark}".rstrip())
    for pending in state.pending:
        typer.echo(f"pending  {pending.filename}")
    for unknown in state.unknown:
        typer.echo(f"unknown  {unknown.version:04d}_{unknown.name} (newer than this engage)")
    if state.changed or state.unknown:
        raise typer.Exit(1)


app.command()(backup.backup)
app.command()(backup.restore)
app.command()(backup.verify)
