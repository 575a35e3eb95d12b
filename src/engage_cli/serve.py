"""`engage serve`: the HTTP API on granian, with N worker processes."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import tempfile
from importlib.util import find_spec
from typing import Any

import structlog
import typer

from engage_adapters.bootstrap import (
    HEADROOM,
    Database,
    database_kept_running,
    pool_size_per_worker,
)
from engage_adapters.settings import (
    DEFAULT_HTTP_BUFFER_BYTES,
    Settings,
    load_settings,
    resolve_jwt_secret,
)
from engage_cli.errors import fail, reported_errors
from engage_http import BIND_HOST_VARIABLE

# Nothing here imports engage_http.app (nor prometheus_client) at module level:
# prometheus_client must first be imported in the workers, after
# _prometheus_multiprocess_dir has set its directory, or they count in memory
# and /metrics reads empty files (engage_http.asgi refuses to start then).

APP_FACTORY = "engage_http.asgi:app_from_environment"
# granian's own log lines go to the root logger, which configure_logging makes
# JSON lines on stderr, in this process and in each worker.
GRANIAN_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {},
    "handlers": {},
    "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": True}},
}


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(
        os.cpu_count() or 1, min=1, max=256, help="Worker processes (default: one per core)."
    ),
) -> None:
    """Run the HTTP API: apply migrations, then serve until SIGTERM or Ctrl-C.

    Without ENGAGE_DATABASE_URL an embedded PostgreSQL under ENGAGE_DATA_DIR is
    started (or joined), started again if its process dies, and stopped when the
    last engage process using it exits.
    Workers keep no state of their own, so any number of `engage serve`
    processes can share one database behind a load balancer.
    """
    with reported_errors():
        settings = load_settings()
        # This process logs JSON lines as its workers do (granian's own lines too).
        from engage_http.observability import configure_logging

        configure_logging(settings.log_level)
        log = structlog.get_logger("engage.serve")
        resolve_jwt_secret(settings)  # create it once, here, not racing in every worker
        database = Database.of(settings)
        for migration in asyncio.run(database.upgrade()):
            log.info("migration.applied", migration=migration.filename)
        pool_size = _pool_size(settings, workers, asyncio.run(database.connection_budget()))
    _check_port_free(host, port)
    # Workers inherit these: the same database (the embedded one this process
    # holds open), their pool's size, and the bind address that decides the
    # Secure-cookie default.
    os.environ["ENGAGE_DATABASE_URL"] = database.url
    os.environ["ENGAGE_DB_POOL_SIZE"] = str(pool_size)
    os.environ[BIND_HOST_VARIABLE] = host
    # Links in mails point here unless ENGAGE_PUBLIC_URL says where users reach the site.
    if settings.public_url is None:
        os.environ["ENGAGE_PUBLIC_URL"] = served_origin(host, port)
    metrics_dir = _prometheus_multiprocess_dir(workers)
    # The embedded server is started again should its process die meanwhile.
    watch = database_kept_running(settings)

    from granian import Granian

    try:
        with watch:
            Granian(
                target=APP_FACTORY,
                factory=True,
                address=host,
                port=port,
                log_dictconfig=GRANIAN_LOGGING,
                **server_options(workers, http_buffer_bytes=settings.http_buffer_bytes),
            ).serve()
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def server_options(
    workers: int, *, http_buffer_bytes: int = DEFAULT_HTTP_BUFFER_BYTES
) -> dict[str, Any]:
    """How granian runs the app; bench/suite.py serves its bare-handler ceiling
    with the same options, so the two are compared like for like."""
    from granian.constants import Interfaces, Loops, RuntimeModes
    from granian.http import HTTP1Settings

    return {
        "interface": Interfaces.ASGI,
        "workers": workers,
        # Rust I/O on two threads: on the single-threaded default the loop idles (bench/README.md).
        "runtime_mode": RuntimeModes.mt,
        "runtime_threads": 2,
        # uvloop where it exists (not on Windows): less CPU per request (bench/README.md).
        "loop": Loops.uvloop if find_spec("uvloop") else Loops.asyncio,
        "backlog": 2048,
        # ENGAGE_HTTP_BUFFER_BYTES, by default granian's least (8 KiB): each open
        # connection (a live stream, an idle keep-alive) costs about 10 KiB less than at
        # granian's default of 408 KiB; request heads are bounded by it (a 431 past it).
        "http1_settings": HTTP1Settings(max_buffer_size=http_buffer_bytes),
        "log_access": False,  # the app logs each request as JSON, with its request id
        "workers_kill_timeout": 30,  # SIGTERM: in-flight requests get 30 s to finish
        # A worker that dies (the out-of-memory killer, a crash) is replaced while the
        # others serve; one that dies again within seconds of it stops the server.
        "respawn_failed_workers": True,
    }


def _pool_size(settings: Settings, workers: int, budget: int) -> int:
    """Each worker's database pool: ENGAGE_DB_POOL_SIZE, or as many as the
    server's max_connections allows for this many workers (at most 10)."""
    size = settings.db_pool_size or pool_size_per_worker(workers, budget)
    if workers * size > budget - HEADROOM:
        typer.echo(
            f"warning: {workers} workers x {size} database connections exceed what the"
            f" database allows ({budget} connections, {HEADROOM} kept for the CLI and"
            " backups); requests may wait or fail: lower --workers or ENGAGE_DB_POOL_SIZE,"
            " or raise the server's max_connections",
            err=True,
        )
    return size


def served_origin(host: str, port: int) -> str:
    """The address this server answers at; loopback for a wildcard bind."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the wildcard, not binding it
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(f"port {port} on {host} is already in use")
            fail(f"cannot listen on {host}:{port}: {exc.strerror}")


def _prometheus_multiprocess_dir(workers: int) -> str | None:
    """Several workers: Prometheus counters are summed across them through files."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    path = tempfile.mkdtemp(prefix="engage-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path
