"""Services as the composition root wires them, over PostgreSQL and over the fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from engage_adapters.bootstrap import Services, Storage, build_services
from engage_adapters.settings import load_settings
from engage_core.testing import FakeClock, FakePasswordHasher

TABLES = "users, engagement_metrics, sessions, metric_rollups, idempotency_keys"


@pytest.fixture(params=["postgres", "memory"])
def storage(request: pytest.FixtureRequest) -> Storage:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def database_url(storage: Storage, request: pytest.FixtureRequest) -> str | None:
    """This module's database, emptied (sync: the server fixture runs its own loop)."""
    if storage != "postgres":
        return None
    url: str = request.getfixturevalue("pg_url")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return url


@pytest.fixture
async def services(
    storage: Storage, database_url: str | None, tmp_path: Path
) -> AsyncIterator[Services]:
    environ = {"ENGAGE_JWT_SECRET": "s" * 32, "ENGAGE_DATA_DIR": str(tmp_path)}
    if database_url is not None:
        environ["ENGAGE_DATABASE_URL"] = database_url
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    async with build_services(
        load_settings(environ), storage=storage, hasher=FakePasswordHasher(), clock=clock
    ) as built:
        yield built
