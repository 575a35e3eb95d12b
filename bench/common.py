"""What the bench scripts share: argument checks and aligned tables.

The scripts run as `python bench/<name>.py`, so this directory is on their path.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql

from engage_adapters.postgres.migrate import upgrade


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
