"""Versioned SQL migrations shipped in this package.

Files are named ``NNNN_name.sql`` and applied in order, each in its own
transaction, and recorded with a SHA-256 checksum in ``schema_migrations``.
A session-level advisory lock serialises concurrent upgraders, so two
processes never apply one migration twice. A file that changed after it was
applied stops the upgrade with a clear message.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from importlib import resources

import psycopg
from attrs import frozen

# pg_advisory_lock key: the first 8 bytes of sha256("engage-suite migrations").
LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"engage-suite migrations").digest()[:8], "big", signed=True
)
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


class MigrationError(Exception):
    """The schema cannot be brought up to date; the message says why and what to do."""


@frozen
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


@frozen
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: datetime


@frozen
class MigrationStatus:
    applied: tuple[AppliedMigration, ...]
    pending: tuple[Migration, ...]
    changed: tuple[Migration, ...]  # applied, but the file differs now
    unknown: tuple[AppliedMigration, ...]  # applied, but this version has no file


def shipped_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("engage_adapters.postgres.migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):  # pragma: no cover - a packaging mistake
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   char(64) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def _applied(conn: psycopg.AsyncConnection) -> dict[int, AppliedMigration]:
    exists = await (await conn.execute("SELECT to_regclass('schema_migrations')")).fetchone()
    if exists is None or exists[0] is None:
        return {}
    rows = await (
        await conn.execute("SELECT version, name, checksum, applied_at FROM schema_migrations")
    ).fetchall()
    return {r[0]: AppliedMigration(r[0], r[1], r[2], r[3]) for r in rows}


def _compare(applied: dict[int, AppliedMigration], shipped: list[Migration]) -> MigrationStatus:
    known = {m.version for m in shipped}
    return MigrationStatus(
        applied=tuple(applied[v] for v in sorted(applied)),
        pending=tuple(m for m in shipped if m.version not in applied),
        changed=tuple(
            m for m in shipped if m.version in applied and applied[m.version].checksum != m.checksum
        ),
        unknown=tuple(applied[v] for v in sorted(applied) if v not in known),
    )


async def status(conninfo: str) -> MigrationStatus:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        return _compare(await _applied(conn), shipped_migrations())


def _refuse_drift(state: MigrationStatus) -> None:
    if state.changed:
        names = ", ".join(m.filename for m in state.changed)
        raise MigrationError(
            f"migration {names} changed after it was applied (checksum mismatch); "
            "restore the original file and add a new migration instead"
        )
    if state.unknown:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in state.unknown)
        raise MigrationError(
            f"the database has migration {names} that this engage version does not know; "
            "upgrade engage-suite"
        )


async def upgrade(conninfo: str) -> list[Migration]:
    """Apply every pending migration; return those applied by this call."""
    shipped = shipped_migrations()
    done: list[Migration] = []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            await conn.execute(_CREATE_TABLE)
            state = _compare(await _applied(conn), shipped)
            _refuse_drift(state)
            for migration in state.pending:
                async with conn.transaction():
                    await conn.execute(migration.sql.encode("utf-8"))
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        [migration.version, migration.name, migration.checksum],
                    )
                done.append(migration)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    return done


async def require_current(conninfo: str) -> None:
    """Refuse to run against a schema that is behind or ahead of this code."""
    state = await status(conninfo)
    _refuse_drift(state)
    if state.pending:
        raise MigrationError(f"{len(state.pending)} migration(s) pending; run `engage db upgrade`")
