"""`engage key`: create, list and revoke a user's API keys, by email and key id."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from engage_adapters.bootstrap import Services
from engage_cli.context import with_services
from engage_cli.errors import guarded, until_the_reader_leaves
from engage_core.model import OPERATOR, ApiKey, ApiKeyScope, Email, OwnedApiKey

app = typer.Typer(
    help="API keys: scoped bearer credentials for the metrics endpoints.", no_args_is_help=True
)

EMAIL = typer.Argument(..., metavar="EMAIL", help="The user's email address (any letter case).")
SCOPES = ", ".join(scope.value for scope in ApiKeyScope)
SCOPE = typer.Option(..., "--scope", help=f"What the key may do; repeat for several: {SCOPES}.")


@app.command()
def create(
    email: str = EMAIL,
    name: str = typer.Option(..., "--name", help="What the key is for (1 to 100 characters)."),
    scope: list[str] = SCOPE,
    expires: str | None = typer.Option(
        None, "--expires", help="When it stops working: ISO 8601 with an offset (default: never)."
    ),
) -> None:
    """Create a key for a user and print it: it is shown this once, stored only as a hash."""
    guarded(lambda: Email(email))

    async def work(services: Services) -> tuple[ApiKey, str, str]:
        user = await services.admin.find(email)
        issued = await services.api_keys.create(
            user.id, name=name, scopes=scope, expires_at=expires, client=OPERATOR
        )
        return issued.key, issued.token, str(user.email)

    key, token, owner = with_services(work)
    typer.echo(token)
    typer.echo(
        f"created key {key.id} ({key.name}: {', '.join(sorted(key.scopes))}) for {owner};"
        " it is shown only now",
        err=True,
    )


@app.command("list")
def list_keys(
    email: str | None = typer.Argument(
        None, metavar="[EMAIL]", help="Only this user's keys (default: every user's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
) -> None:
    """List keys that are not revoked: id, user, name, scopes, created, expires, last used (UTC)."""
    if email is not None:
        guarded(lambda: Email(email))

    async def work(services: Services) -> list[OwnedApiKey]:
        if email is None:
            return list(await services.api_keys.every_key())
        user = await services.admin.find(email)
        keys = await services.api_keys.list_for(user.id)
        return [OwnedApiKey(key=key, email=user.email.value) for key in keys]

    owned = with_services(work)
    with until_the_reader_leaves():
        _print_keys(owned, as_json=as_json)


def _print_keys(owned: list[OwnedApiKey], *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([_as_json(o) for o in owned], indent=2, ensure_ascii=False))
        return
    # The moments' columns as wide as one (2026-01-01T00:00:00+00:00: 25 characters).
    typer.echo(
        f"{'id':<36}  {'email':<30}  {'name':<20}  {'scopes':<27}  "
        f"{'created_at':<25}  {'expires_at':<25}  last_used_at"
    )
    for item in owned:
        key = item.key
        typer.echo(
            f"{key.id}  {item.email:<30}  {key.name:<20}  {','.join(sorted(key.scopes)):<27}  "
            f"{_moment(key.created_at):<25}  {_moment(key.expires_at):<25}  "
            f"{_moment(key.last_used_at)}"
        )


@app.command()
def revoke(key_id: str = typer.Argument(..., metavar="ID", help="The key's id.")) -> None:
    """Revoke a key: every request with it is refused at once, its streams close."""
    key = with_services(lambda s: s.api_keys.revoke_any(key_id))
    typer.echo(f"revoked key {key.id} ({key.name})")


def _moment(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def _as_json(item: OwnedApiKey) -> dict[str, object]:
    key = item.key

    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).isoformat()

    return {
        "id": str(key.id),
        "email": item.email,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": sorted(key.scopes),
        "created_at": moment(key.created_at),
        "expires_at": moment(key.expires_at),
        "last_used_at": moment(key.last_used_at),
    }
