"""`engage user`: create, list and delete accounts, set a password, and, by email,
unlock failed logins, reset the second factor, list and end sessions.

Prompts run between service calls, never inside the event loop, so Ctrl-C at a
prompt stops the command at once.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC
from functools import partial

import typer

from engage_adapters.bootstrap import Services
from engage_cli import terminal
from engage_cli.context import with_services
from engage_cli.errors import fail, guarded, until_the_reader_leaves
from engage_core.errors import Conflict, NotFound
from engage_core.model import DeviceSession, Email, User

app = typer.Typer(
    help="User accounts: create, list, delete, set a password, unlock, reset the second"
    " factor, list and end sessions.",
    no_args_is_help=True,
)
PAGE_SIZE = 500

EMAIL = typer.Argument(..., metavar="EMAIL", help="The user's email address (any letter case).")
PASSWORD_STDIN = typer.Option(
    False,
    "--password-stdin",
    help="Read the password from the first line of stdin instead of prompting.",
)


@app.command()
def create(email: str = EMAIL, password_stdin: bool = PASSWORD_STDIN) -> None:
    """Create a user with the API's rules for email and password; print their id."""
    guarded(lambda: Email(email))
    if not password_stdin:
        _require_terminal("no terminal to ask for the password on: pass --password-stdin")
        with_services(partial(_refuse_taken, email))  # before the operator types a password
    password = _read_password(password_stdin)
    user = with_services(lambda s: s.admin.create_user(email=email, password=password))
    typer.echo(str(user.id))


@app.command("list")
def list_users(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
) -> None:
    """List every user, ordered by email: id, created_at (UTC), email."""

    async def work(services: Services) -> None:
        if as_json:
            await _echo_json_array(services)
            return
        typer.echo(f"{'id':<36}  {'created_at':<25}  email")
        async for user in _every_user(services):
            created = user.created_at.astimezone(UTC).isoformat(timespec="seconds")
            typer.echo(f"{user.id}  {created:<25}  {user.email}")

    with until_the_reader_leaves():
        with_services(work)


@app.command()
def delete(
    email: str = EMAIL,
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking."),
) -> None:
    """Delete a user and all their data (metrics, sessions); their sessions end at once."""
    guarded(lambda: Email(email))
    if not yes:
        _require_terminal("refusing to delete a user without confirmation: pass --yes")
        found = with_services(lambda s: s.admin.find(email))
        question = f"Delete {found.email} ({found.id}) and all their metrics and sessions?"
        if not typer.confirm(question, default=False):
            fail("nothing deleted")
    user = with_services(lambda s: s.admin.delete_user(email))
    typer.echo(f"deleted {user.email} ({user.id})")


@app.command("set-password")
def set_password(email: str = EMAIL, password_stdin: bool = PASSWORD_STDIN) -> None:
    """Replace a user's password; every session of theirs ends."""
    guarded(lambda: Email(email))
    if not password_stdin:
        _require_terminal("no terminal to ask for the password on: pass --password-stdin")
        with_services(lambda s: s.admin.find(email))  # before the operator types a password
    password = _read_password(password_stdin)
    user = with_services(lambda s: s.admin.set_password(email, password))
    typer.echo(f"password set for {user.email}; their sessions have ended")


@app.command()
def unlock(email: str = EMAIL) -> None:
    """Clear the lock that failed logins put on an email, in every process."""
    guarded(lambda: Email(email))
    user = with_services(lambda s: s.admin.unlock(email))
    typer.echo(f"failed logins cleared for {user.email}")


@app.command("mfa-reset")
def mfa_reset(
    email: str = EMAIL,
    yes: bool = typer.Option(False, "--yes", "-y", help="Reset without asking."),
) -> None:
    """Turn a user's second factor off (recorded in their activity).

    Do it once their identity is checked some other way: they sign in with the
    password alone until they set it up again."""
    guarded(lambda: Email(email))
    if not yes:
        _require_terminal("refusing to reset the second factor without confirmation: pass --yes")
        found, on = with_services(lambda s: s.admin.has_second_factor(email))
        if not on:  # nothing to confirm
            fail(f"{found.email} has no second factor set up")
        if not typer.confirm(f"Turn the second factor of {found.email} off?", default=False):
            fail("nothing changed")
    user, was_on = with_services(lambda s: s.admin.reset_second_factor(email))
    if not was_on:
        fail(f"{user.email} has no second factor set up")
    typer.echo(f"second factor off for {user.email}")


@app.command()
def sessions(email: str = EMAIL) -> None:
    """List a user's live sessions, one per signed-in device.

    Columns: id, signed in, last seen (UTC), address, user agent."""
    guarded(lambda: Email(email))
    _, devices = with_services(lambda s: s.admin.sessions_of(email))
    with until_the_reader_leaves():
        _print_sessions(devices)


def _print_sessions(devices: list[DeviceSession]) -> None:
    typer.echo(f"{'id':<36}  {'signed_in':<25}  {'last_seen':<25}  {'ip':<20}  user agent")
    for device in devices:
        signed_in = device.signed_in_at.astimezone(UTC).isoformat(timespec="seconds")
        seen = device.last_seen_at.astimezone(UTC).isoformat(timespec="seconds")
        typer.echo(
            f"{device.id}  {signed_in:<25}  {seen:<25}  {device.client.ip or '-':<20}"
            f"  {device.client.user_agent or '-'}"
        )


@app.command()
def logout(email: str = EMAIL) -> None:
    """End every session of a user at once, in every process."""
    guarded(lambda: Email(email))
    user, count = with_services(lambda s: s.admin.log_out_everywhere(email))
    typer.echo(f"{count} session(s) of {user.email} ended")


async def _refuse_taken(email: str, services: Services) -> None:
    with contextlib.suppress(NotFound):
        await services.admin.find(email)
        raise Conflict("an account with this email already exists")


async def _every_user(services: Services) -> AsyncIterator[User]:
    """Every user, a page at a time."""
    after: str | None = None
    while True:
        page = await services.admin.list_users(after_email=after, limit=PAGE_SIZE)
        for user in page:
            yield user
        if len(page) < PAGE_SIZE:
            return
        after = page[-1].email.canonical


async def _echo_json_array(services: Services) -> None:
    """A JSON array, one user per line, streamed: memory stays flat however many there are."""
    typer.echo("[")
    previous: str | None = None
    async for user in _every_user(services):
        if previous is not None:
            typer.echo(f"  {previous},")
        previous = json.dumps(
            {
                "id": str(user.id),
                "email": str(user.email),
                "created_at": user.created_at.astimezone(UTC).isoformat(),
            },
            ensure_ascii=False,
        )
    if previous is not None:
        typer.echo(f"  {previous}")
    typer.echo("]")


def _require_terminal(refusal: str) -> None:
    if not terminal.stdin_is_terminal():
        fail(refusal)


def _read_password(password_stdin: bool) -> str:
    """One line of stdin (without its line ending), or a twice-typed, unechoed prompt."""
    if not password_stdin:
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    line = sys.stdin.buffer.readline()
    if not line:
        fail("--password-stdin: stdin is empty")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        fail("--password-stdin: the password is not valid UTF-8")
    return text.removesuffix("\n").removesuffix("\r")
