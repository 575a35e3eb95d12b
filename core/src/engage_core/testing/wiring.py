"""The use cases wired over the fakes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from attrs import define

from engage_core.inprocess import InMemoryCache, InMemoryRateLimiter
from engage_core.queries import CursorCodec
from engage_core.services.auth import AuthPolicy, AuthService
from engage_core.services.idempotency import IdempotencyGuard
from engage_core.services.metrics import MetricsService
from engage_core.testing.clock import FakeClock
from engage_core.testing.security import FakePasswordHasher, FakeTokenIssuer
from engage_core.testing.storage import (
    InMemoryIdempotencyStore,
    InMemoryMetricRepository,
    InMemorySessionRepository,
    InMemoryUserRepository,
    link_cascade,
)
from engage_core.testing.unit_of_work import InMemoryUnitOfWork

__all__ = ["InMemoryServices", "in_memory_services"]


@define(kw_only=True)
class InMemoryServices:
    """The use cases wired over the fakes: a whole engage-suite in one process,
    for another service's tests or a quick try-out. Nothing touches disk."""

    clock: FakeClock
    users: InMemoryUserRepository
    metrics_repository: InMemoryMetricRepository
    sessions: InMemorySessionRepository
    auth: AuthService
    metrics: MetricsService
    idempotency: IdempotencyGuard


def in_memory_services(
    *, clock: FakeClock | None = None, policy: AuthPolicy | None = None
) -> InMemoryServices:
    """Sign-up, login, metrics and summaries over the fakes, ready to call."""
    clock = clock or FakeClock(datetime.now(UTC))
    users = InMemoryUserRepository()
    metrics = InMemoryMetricRepository()
    sessions = InMemorySessionRepository()
    keys = InMemoryIdempotencyStore(clock)
    link_cascade(users, metrics, sessions, keys)
    uow = InMemoryUnitOfWork(users, metrics, sessions, keys)
    return InMemoryServices(
        clock=clock,
        users=users,
        metrics_repository=metrics,
        sessions=sessions,
        auth=AuthService(
            users=users,
            sessions=sessions,
            hasher=FakePasswordHasher(),
            tokens=FakeTokenIssuer(clock),
            cache=InMemoryCache(clock),
            limiter=InMemoryRateLimiter(clock),
            clock=clock,
            uow=uow,
            policy=policy or AuthPolicy(),
        ),
        metrics=MetricsService(
            metrics=metrics, clock=clock, cursors=CursorCodec(secrets.token_bytes(32))
        ),
        idempotency=IdempotencyGuard(keys, uow),
    )
