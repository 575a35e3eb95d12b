"""`engage demo`: a demo account with a year of synthetic metrics, ready to sign in with."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import attrs
import typer

from engage_adapters.bootstrap import DEFAULT_PUBLIC_URL, Services
from engage_cli.context import with_services
from engage_cli.demo_data import MAX_DAYS, SyntheticMetric, demo_metrics
from engage_cli.errors import fail, guarded
from engage_cli.terminal import counted
from engage_cli.users import _read_password as read_password
from engage_core.errors import Conflict, NotFound
from engage_core.model import Email, Password
from engage_core.services.backfill import BackfillReport, RawRow

DEFAULT_EMAIL = "demo@example.com"


@attrs.frozen
class DemoAccount:
    email: str
    report: BackfillReport
    replaced: bool
    site: str  # where to sign in: ENGAGE_PUBLIC_URL, as the account's mail links say


def demo(
    email: Annotated[
        str, typer.Option("--email", help="The demo account's address.")
    ] = DEFAULT_EMAIL,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            help="Its password (other local users can see it in the process list;"
            " prefer --password-stdin). Default: a new random one.",
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read its password from the first line of stdin."),
    ] = False,
    days: Annotated[
        int, typer.Option("--days", help=f"Days of metrics, up to now (1 to {MAX_DAYS}).")
    ] = 365,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="The same seed makes the same metrics (default: a new one, printed)."
        ),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help=f"Replace an existing account at an address other than {DEFAULT_EMAIL}.",
        ),
    ] = False,
) -> None:
    """Create a demo account with synthetic metrics and print how to sign in.

    Page views, sessions (seconds), sign-ups and purchases with daily and
    weekly rhythms, noise and growth, loaded like `engage metrics backfill`.
    An account already at the address is deleted with all its data and made
    again (for any address but the default only with --yes), so running it
    twice gives a fresh demo, not doubled rows. The address to sign in at is
    ENGAGE_PUBLIC_URL (default http://127.0.0.1:8000/, `engage serve`'s own).
    """
    guarded(lambda: Email(email))
    if not 1 <= days <= MAX_DAYS:
        fail(f"--days must be from 1 to {MAX_DAYS}")
    if password is not None and password_stdin:
        fail("give --password or --password-stdin, not both")
    chosen = read_password(password_stdin=True) if password_stdin else password
    if chosen is None:
        chosen = secrets.token_urlsafe(12)
    guarded(lambda: Password(chosen))
    chosen_seed = secrets.randbelow(2**32) if seed is None else seed

    async def make(services: Services) -> DemoAccount:
        replaced = await _delete_existing(services, email, allowed=yes)
        user = await services.admin.create_user(email=email, password=chosen)
        # A whole hour: the same seed within the hour makes the same metrics.
        end = services.clock.now().replace(minute=0, second=0, microsecond=0)
        tz = datetime.now().astimezone().tzinfo or UTC  # the audience lives where the operator does
        rows = _raw_rows(demo_metrics(end=end, days=days, seed=chosen_seed, tz=tz))
        report = await services.backfill.backfill(rows, user_email=user.email.value)
        site = services.settings.public_url or DEFAULT_PUBLIC_URL
        return DemoAccount(
            email=user.email.value, report=report, replaced=replaced, site=site + "/"
        )

    account = with_services(make)
    if not account.report.ok:  # pragma: no cover - the generator makes only valid rows
        fault = account.report.faults[0]
        fail(f"a generated metric was refused (row {fault.line}): {fault.message}")
    action = "replaced" if account.replaced else "created"
    typer.echo(
        f"Demo account {action}: {counted(account.report.inserted, 'metric', grouped=True)}"
        f" over {counted(days, 'day')}"
        f" (seed {chosen_seed})."
    )
    typer.echo(f"Open {account.site} and sign in with")
    typer.echo(f"  email:    {account.email}")
    typer.echo(f"  password: {chosen}")


async def _delete_existing(services: Services, email: str, *, allowed: bool) -> bool:
    """Delete the account at ``email`` if there is one; whether there was."""
    with contextlib.suppress(NotFound):
        found = await services.admin.find(email)
        if found.email != Email(DEFAULT_EMAIL) and not allowed:
            raise Conflict(f"{found.email} already has an account: pass --yes to replace it")
        await services.admin.delete_user(email)
        return True
    return False


def _raw_rows(metrics: Iterator[SyntheticMetric]) -> Iterator[RawRow]:
    """The metrics as backfill rows, in the text a file would hold them in."""
    for line, (metric_type, value, recorded_at) in enumerate(metrics, start=1):
        yield RawRow(
            line=line,
            metric_type=metric_type,
            metric_value=str(value),
            recorded_at=recorded_at.isoformat(),
        )
