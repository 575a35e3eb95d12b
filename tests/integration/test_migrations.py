"""Migrations: fresh, repeated, concurrent, and refused when an applied file changed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from engage_adapters.postgres import migrate


@pytest.fixture
def empty_db(pg_server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"engage_mig_{request.node.name.lower()}"[:63].replace("[", "_").replace("]", "_")
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(pg_server_url, dbname=name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


async def test_a_fresh_database_gets_every_migration_once(empty_db: str) -> None:
    shipped = migrate.shipped_migrations()
    applied = await migrate.upgrade(empty_db)
    assert [m.version for m in applied] == [m.version for m in shipped]
    state = await migrate.status(empty_db)
    assert [a.version for a in state.applied] == [m.version for m in shipped]
    assert all(a.checksum == m.checksum for a, m in zip(state.applied, shipped, strict=True))
    assert not state.pending


async def test_upgrading_again_applies_nothing(empty_db: str) -> None:
    await migrate.upgrade(empty_db)
    assert await migrate.upgrade(empty_db) == []


async def test_concurrent_upgrades_apply_each_migration_once(empty_db: str) -> None:
    results = await asyncio.gather(*(migrate.upgrade(empty_db) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migrate.shipped_migrations())]
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute("SELECT version, count(*) FROM schema_migrations GROUP BY 1").fetchall()
    assert all(count == 1 for _, count in rows)


async def test_a_changed_applied_migration_stops_the_upgrade(empty_db: str) -> None:
    await migrate.upgrade(empty_db)
    with psycopg.connect(empty_db) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 1")
    with pytest.raises(
        migrate.MigrationError, match=r"0001_initial\.sql changed after it was applied"
    ):
        await migrate.upgrade(empty_db)
    with pytest.raises(migrate.MigrationError, match="changed"):
        await migrate.require_current(empty_db)


async def test_a_database_newer_than_the_code_is_refused(empty_db: str) -> None:
    await migrate.upgrade(empty_db)
    with psycopg.connect(empty_db) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum)"
            " VALUES (9999, 'future', repeat('1', 64))"
        )
    with pytest.raises(migrate.MigrationError, match="does not know"):
        await migrate.require_current(empty_db)


async def test_pending_migrations_are_refused_at_start(empty_db: str) -> None:
    with pytest.raises(migrate.MigrationError, match="engage db upgrade"):
        await migrate.require_current(empty_db)


async def test_a_failing_migration_leaves_nothing_behind(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = migrate.Migration(1, "broken", "CREATE TABLE half_done (x int); SELECT 1/0;")
    monkeypatch.setattr(migrate, "shipped_migrations", lambda: [broken])
    with pytest.raises(psycopg.errors.DivisionByZero):
        await migrate.upgrade(empty_db)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)
