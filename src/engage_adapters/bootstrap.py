"""The one composition root: settings in, a ready object graph out.

HTTP, CLI and tests all build their services here, so there is exactly one
place that decides which adapter stands behind each port.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from attrs import define

from engage_adapters import memory
from engage_adapters.bcrypt_hasher import BcryptPasswordHasher
from engage_adapters.clock import SystemClock
from engage_adapters.jwt_tokens import JwtTokenIssuer
from engage_adapters.settings import Settings, resolve_jwt_secret
from engage_core.ports import (
    Cache,
    Clock,
    IdempotencyStore,
    PasswordHasher,
    RateLimiter,
    TokenIssuer,
)
from engage_core.queries import CursorCodec
from engage_core.services.auth import AuthPolicy, AuthService
from engage_core.services.idempotency import IdempotencyGuard
from engage_core.services.metrics import MetricsService

Storage = Literal["memory"]


@define(kw_only=True)
class Services:
    """Everything an entry point needs, built from settings."""

    settings: Settings
    clock: Clock
    auth: AuthService
    metrics: MetricsService
    idempotency: IdempotencyGuard
    limiter: RateLimiter
    cache: Cache


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A separate key per purpose from the one deployment secret."""
    return hmac.new(secret, f"engage-suite/{purpose}".encode(), hashlib.sha256).digest()


@asynccontextmanager
async def build_services(
    settings: Settings,
    *,
    storage: Storage = "memory",
    clock: Clock | None = None,
    hasher: PasswordHasher | None = None,
    tokens: TokenIssuer | None = None,
) -> AsyncIterator[Services]:
    """Build the services for ``settings`` and close what they opened on exit.

    ``storage="memory"`` keeps everything in this process (tests, demos).
    ``clock``, ``hasher`` and ``tokens`` may be swapped for tests.
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
    users = memory.InMemoryUserRepository()
    metrics = memory.InMemoryMetricRepository()
    sessions = memory.InMemorySessionRepository()
    memory.link_cascade(users, metrics, sessions)
    cache: Cache = memory.InMemoryCache()
    limiter: RateLimiter = memory.InMemoryRateLimiter()
    idempotency: IdempotencyStore = memory.InMemoryIdempotencyStore()
    policy = AuthPolicy(
        access_ttl=settings.access_ttl,
        refresh_ttl=settings.refresh_ttl,
        login_failures_per_email=settings.login_failures_per_email,
        # The in-process cache is not shared between workers: never cache "live".
        live_session_cache_ttl=0.0,
    )
    try:
        yield Services(
            settings=settings,
            clock=clock,
            auth=AuthService(
                users=users,
                sessions=sessions,
                hasher=hasher,
                tokens=tokens,
                cache=cache,
                limiter=limiter,
                clock=clock,
                policy=policy,
            ),
            metrics=MetricsService(
                metrics=metrics, clock=clock, cursors=CursorCodec(derive_key(secret, "cursor"))
            ),
            idempotency=IdempotencyGuard(idempotency),
            limiter=limiter,
            cache=cache,
        )
    finally:
        if bcrypt_hasher is not None:
            bcrypt_hasher.close()
