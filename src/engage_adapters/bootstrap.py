"""The one composition root: settings in, a ready object graph out.

HTTP, CLI and tests all build their services here, so there is exactly one
place that decides which adapter stands behind each port.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Literal

import attrs
from attrs import define

from engage_adapters import memory
from engage_adapters.bcrypt_hasher import BcryptPasswordHasher
from engage_adapters.clock import SystemClock
from engage_adapters.embedded_pg import start_embedded
from engage_adapters.jwt_tokens import JwtTokenIssuer
from engage_adapters.postgres import migrate
from engage_adapters.postgres.bulk import PostgresBulkMetricStore
from engage_adapters.postgres.idempotency import PostgresIdempotencyStore
from engage_adapters.postgres.metrics import PostgresMetricRepository
from engage_adapters.postgres.pool import open_pool, ping
from engage_adapters.postgres.sessions import PostgresSessionRepository
from engage_adapters.postgres.users import PostgresUserRepository
from engage_adapters.settings import Settings, resolve_jwt_secret
from engage_core.ports import (
    Cache,
    Clock,
    IdempotencyStore,
    MetricRepository,
    PasswordHasher,
    RateLimiter,
    SessionRepository,
    TokenIssuer,
    UserRepository,
)
from engage_core.queries import CursorCodec
from engage_core.services.admin import AccountAdmin
from engage_core.services.auth import AuthPolicy, AuthService
from engage_core.services.backfill import BackfillService, BulkMetricStore
from engage_core.services.idempotency import IdempotencyGuard
from engage_core.services.metrics import MetricsService

Storage = Literal["postgres", "memory"]
Probe = Callable[[], Awaitable[object]]
PROBE_TIMEOUT = 2.0


@define(kw_only=True)
class Services:
    """Everything an entry point needs, built from settings."""

    settings: Settings
    clock: Clock
    auth: AuthService
    admin: AccountAdmin
    metrics: MetricsService
    backfill: BackfillService
    idempotency: IdempotencyGuard
    limiter: RateLimiter
    cache: Cache
    probes: dict[str, Probe] = attrs.field(factory=dict)

    async def check_ready(self) -> dict[str, str]:
        """Each dependency's state: "ok", or why not (never raises)."""
        states = {}
        for name, probe in self.probes.items():
            try:
                await asyncio.wait_for(probe(), timeout=PROBE_TIMEOUT)
            except TimeoutError:
                states[name] = "timeout"
            except Exception as exc:  # a probe reports; it does not fail the caller
                states[name] = f"error: {type(exc).__name__}"
            else:
                states[name] = "ok"
        return states


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A separate key per purpose from the one deployment secret."""
    return hmac.new(secret, f"engage-suite/{purpose}".encode(), hashlib.sha256).digest()


@asynccontextmanager
async def build_services(
    settings: Settings,
    *,
    storage: Storage = "postgres",
    clock: Clock | None = None,
    hasher: PasswordHasher | None = None,
    tokens: TokenIssuer | None = None,
    upgrade: bool = False,
) -> AsyncIterator[Services]:
    """Build the services for ``settings`` and close what they opened on exit.

    ``storage="postgres"`` uses ``ENGAGE_DATABASE_URL``, or the embedded
    server under the data directory when it is unset; the schema must be
    current (``engage db upgrade``), unless ``upgrade`` applies pending
    migrations first (as ``engage serve`` and the CLI do). ``storage="memory"`` keeps everything in
    this process (tests, demos). ``clock``, ``hasher`` and ``tokens`` may be
    swapped for tests.
    """
    clock = clock or SystemClock()
    secret = resolve_jwt_secret(settings)
    bcrypt_hasher = None
    if hasher is None:
        hasher = bcrypt_hasher = BcryptPasswordHasher(settings.bcrypt_rounds)
    tokens = tokens or JwtTokenIssuer(
        secret,
        algorithm=settings.jwt_algorithm,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    cache: Cache = memory.InMemoryCache()
    limiter: RateLimiter = memory.InMemoryRateLimiter()
    async with AsyncExitStack() as stack:
        users: UserRepository
        metrics: MetricRepository
        sessions: SessionRepository
        idempotency: IdempotencyStore
        bulk: BulkMetricStore
        probes: dict[str, Probe] = {}
        if storage == "postgres":
            conninfo = await asyncio.to_thread(database_url, settings)
            if upgrade:
                await migrate.upgrade(conninfo)
            await migrate.require_current(conninfo)
            pool = await open_pool(conninfo)
            stack.push_async_callback(pool.close)
            users = PostgresUserRepository(pool)
            metrics = PostgresMetricRepository(pool)
            sessions = PostgresSessionRepository(pool)
            idempotency = PostgresIdempotencyStore(pool)
            bulk = PostgresBulkMetricStore(pool)
            probes["database"] = partial(ping, pool)
        else:
            users = memory_users = memory.InMemoryUserRepository()
            metrics = memory_metrics = memory.InMemoryMetricRepository()
            sessions = memory_sessions = memory.InMemorySessionRepository()
            idempotency = memory_keys = memory.InMemoryIdempotencyStore()
            memory.link_cascade(memory_users, memory_metrics, memory_sessions, memory_keys)
            bulk = memory.InMemoryBulkMetricStore(memory_users, memory_metrics)
        policy = AuthPolicy(
            access_ttl=settings.access_ttl,
            refresh_ttl=settings.refresh_ttl,
            login_failures_per_email=settings.login_failures_per_email,
            # The in-process cache is not shared between workers: never cache "live".
            live_session_cache_ttl=0.0,
        )
        if bcrypt_hasher is not None:
            stack.callback(bcrypt_hasher.close)
        auth = AuthService(
            users=users,
            sessions=sessions,
            hasher=hasher,
            tokens=tokens,
            cache=cache,
            limiter=limiter,
            clock=clock,
            policy=policy,
        )
        yield Services(
            settings=settings,
            clock=clock,
            auth=auth,
            admin=AccountAdmin(auth),
            metrics=MetricsService(
                metrics=metrics, clock=clock, cursors=CursorCodec(derive_key(secret, "cursor"))
            ),
            backfill=BackfillService(bulk, clock),
            idempotency=IdempotencyGuard(idempotency),
            limiter=limiter,
            cache=cache,
            probes=probes,
        )


def database_url(settings: Settings) -> str:
    """``ENGAGE_DATABASE_URL``, or the embedded server's (started or joined here)."""
    if settings.database_url is not None:
        return settings.database_url
    return start_embedded(settings.data_dir)
