"""The ``engage`` command: settings and, as they land, serve, db, user and metrics."""

from __future__ import annotations

import signal
import sys
from importlib.metadata import PackageNotFoundError, version

import attrs
import typer

from engage_adapters.settings import (
    KNOWN_VARIABLES,
    SECRET_FILE,
    Settings,
    SettingsError,
    load_settings,
    resolve_jwt_secret,
)
from engage_cli import db, keys, mail, metrics, users
from engage_cli.activity import activity
from engage_cli.demo import demo
from engage_cli.errors import is_lost_output, output_failed, reported_errors
from engage_cli.help import show_flags_bare
from engage_cli.serve import serve

show_flags_bare()
app = typer.Typer(
    name="engage",
    help="Operate engage-suite: user accounts and per-user engagement metrics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
settings_app = typer.Typer(help="Inspect the ENGAGE_* settings.", no_args_is_help=True)
app.command()(serve)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="user")
app.add_typer(metrics.app, name="metrics")
app.add_typer(keys.app, name="key")
app.add_typer(mail.app, name="mail")
app.command()(activity)
app.command()(demo)
app.add_typer(settings_app, name="settings")


def _version() -> str:
    try:
        return version("engage-suite")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"engage {_version()}")
        raise typer.Exit


@app.callback()
def root(
    show_version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Operate engage-suite: user accounts and per-user engagement metrics.

    Settings come from ENGAGE_* environment variables; `engage settings check`
    validates them.
    """


@settings_app.command("check")
def settings_check() -> None:
    """Validate the ENGAGE_* settings and print them, secrets hidden.

    Every fault is printed, one line each, and the exit status is then 1.
    """
    with reported_errors():
        try:
            settings = load_settings()
            secret = _jwt_secret_source(settings)
        except SettingsError as exc:
            for fault in exc.faults:
                typer.echo(f"engage: error: {fault}", err=True)
            raise typer.Exit(1) from None
    hidden = {"jwt_secret", "sentry_dsn", "encryption_keys"}
    for name, value in sorted(attrs.asdict(settings, recurse=False).items()):
        if name == "jwt_secret":
            value = secret
        elif name in hidden and value is not None:
            value = "(set)"
        elif name in ("database_url", "redis_url", "smtp_url") and value is not None:
            value = _without_password(value)
        typer.echo(f"{name} = {_render(value)}")


def _jwt_secret_source(settings: Settings) -> str:
    """Where the JWT secret comes from (never the secret): the variable, or the data
    directory's file, which is checked as `engage serve` would use it."""
    if settings.jwt_secret is not None:
        return "(set)"
    path = settings.data_dir / SECRET_FILE
    if not path.exists():
        return f"(unset: a random one is written to {path} on first use)"
    resolve_jwt_secret(settings)  # its mode and length, as serve checks them
    return f"(from {path})"


@settings_app.command("list")
def settings_list() -> None:
    """List every setting's environment variable."""
    for name in KNOWN_VARIABLES:
        typer.echo(name)


def _render(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "(none)"
    return str(value)


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _stop(signum: int, frame: object) -> None:
    """SIGTERM (systemd, `timeout`, `kill`) and SIGHUP (its terminal closed, an SSH
    session dropped) unwind the command as Ctrl-C does: its
    transaction is rolled back, its pg_dump or pg_restore killed, and its hold on the
    embedded PostgreSQL let go, so the last engage process still stops that server
    (killed outright, the command left it running for good). `engage serve` puts the
    HTTP server's own handler in its place."""
    sys.exit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # `nohup engage ...` keeps on
        signal.signal(signal.SIGHUP, _stop)
    try:
        app()
    except OSError as exc:  # printing what a command found, outside its reported_errors
        if not is_lost_output(exc):
            raise
        output_failed(exc)
