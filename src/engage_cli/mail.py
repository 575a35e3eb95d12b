"""`engage mail`: the outbox (queued, sent and failed messages) and retrying the failed ones.

`engage serve` delivers the outbox; these commands only look at it and requeue.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from engage_adapters.bootstrap import Services
from engage_cli.context import with_services
from engage_cli.errors import until_the_reader_leaves
from engage_cli.terminal import counted
from engage_core.ports import QueuedMail

app = typer.Typer(help="Mail: the outbox and its delivery.", no_args_is_help=True)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else "-"


def _row(item: QueuedMail) -> dict[str, object]:
    return {
        "id": str(item.message.id),
        "created_at": _when(item.created_at),
        "status": item.status.value,
        "attempts": item.attempts,
        "to": item.message.to.value,
        "subject": item.message.subject,
        "sent_at": _when(item.sent_at) if item.sent_at else None,
        "next_attempt_at": _when(item.next_attempt_at) if item.status == "queued" else None,
        "last_error": item.last_error,
        "receipt": item.receipt,
    }


@app.command()
def outbox(
    limit: int = typer.Option(50, min=1, max=10_000, help="Show at most this many messages."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """List the outbox, newest first: queued, sent and failed messages.

    Without ENGAGE_SMTP_URL, sent messages are .eml files under DATA_DIR/outbox/
    (the receipt column names each file).
    """

    async def work(services: Services) -> list[QueuedMail]:
        return list(await services.mail.recent(limit))

    items = with_services(work)
    with until_the_reader_leaves():
        _print_outbox(items, as_json=as_json)


def _print_outbox(items: list[QueuedMail], *, as_json: bool) -> None:
    if as_json:
        for item in items:
            typer.echo(json.dumps(_row(item), ensure_ascii=False))
        return
    if not items:
        typer.echo("the outbox is empty")
        return
    typer.echo(f"{'created_at':<25}  {'status':<6}  {'tries':>5}  {'to':<32}  subject / outcome")
    for item in items:
        row = _row(item)
        outcome = item.receipt if item.status == "sent" else item.last_error
        typer.echo(
            f"{row['created_at']!s:<25}  {item.status.value:<6}  {item.attempts:>5}  "
            f"{item.message.to.value:<32}  {item.message.subject}"
            + (f"\n{'':<44}{outcome}" if outcome else "")
        )


@app.command()
def retry() -> None:
    """Queue every failed message again, with a fresh set of attempts.

    A running `engage serve` sends them within seconds."""
    count = with_services(lambda services: services.mail.retry_failed())
    typer.echo(f"{counted(count, 'failed message')} queued again")
