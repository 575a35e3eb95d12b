"""`engage activity`: the activity log of every account, newest first, for operators."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from engage_adapters.bootstrap import Services
from engage_cli.context import with_services
from engage_cli.errors import option_value, until_the_reader_leaves
from engage_core.model import ActivityEntry, ActivityKind, Email
from engage_core.queries import check_bound
from engage_core.services.activity import check_kind

PAGE_SIZE = 500
KINDS = ", ".join(kind.value for kind in ActivityKind)


def activity(
    user: str | None = typer.Option(
        None, "--user", metavar="EMAIL", help="Only what concerned this address."
    ),
    kind: str | None = typer.Option(
        None,
        "--kind",
        metavar="KIND",
        help=f"Only this kind: {KINDS}.",
    ),
    since: str | None = typer.Option(
        None, "--since", metavar="TIME", help="Only from this ISO 8601 time (with an offset)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Show the activity log, newest first.

    Sign-ups, logins and failures, logouts, second factor, sessions ended and the
    rest; columns: time (UTC), kind, email, address, user agent."""
    email = option_value("--user", lambda: Email(user)) if user is not None else None
    chosen = option_value("--kind", lambda: check_kind(kind)) if kind is not None else None
    start = option_value("--since", lambda: check_bound(since)) if since is not None else None

    async def work(services: Services) -> None:
        if not as_json:
            typer.echo(f"{'at':<25}  {'kind':<18}  {'email':<30}  {'ip':<20}  user agent")
        after: tuple[datetime, int] | None = None
        while True:
            page = await services.activity.search(
                email=email, kind=chosen, since=start, limit=PAGE_SIZE, after=after
            )
            for entry in page:
                typer.echo(_as_json(entry) if as_json else _as_row(entry))
            if len(page) < PAGE_SIZE:
                return
            after = (page[-1].at, page[-1].id)

    with until_the_reader_leaves():
        with_services(work)


def _as_row(entry: ActivityEntry) -> str:
    at = entry.at.astimezone(UTC).isoformat(timespec="seconds")
    return (
        f"{at:<25}  {entry.kind.value:<18}  {entry.email or '-':<30}"
        f"  {entry.client.ip or '-':<20}  {entry.client.user_agent or '-'}"
    )


def _as_json(entry: ActivityEntry) -> str:
    return json.dumps(
        {
            "at": entry.at.astimezone(UTC).isoformat(),
            "kind": entry.kind.value,
            "email": entry.email,
            "user_id": str(entry.user_id) if entry.user_id else None,
            "ip": entry.client.ip,
            "user_agent": entry.client.user_agent,
        },
        ensure_ascii=False,
    )
