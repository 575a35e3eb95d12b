"""In-memory fakes of every engage_core port, for the tests of services that
import the core.

Public and supported: they pass the same contract tests as engage-suite's
PostgreSQL, Redis, bcrypt and JWT adapters. Pure Python with no I/O; not safe
across threads or processes, only within one event loop. ``in_memory_services``
wires sign-up, login, metrics and summaries over them in one call::

    from engage_core.testing import in_memory_services

    world = in_memory_services()
    await world.auth.sign_up(email="ada@example.com", password="correct horse battery")
"""

from engage_core.inprocess import InMemoryCache, InMemoryRateLimiter
from engage_core.testing.clock import FakeClock
from engage_core.testing.dashboards import FakeDashboardCodec
from engage_core.testing.feed import InMemoryMetricFeed
from engage_core.testing.mail import FakeMailer, InMemoryMailQueue
from engage_core.testing.security import (
    FakeOneTimePasswords,
    FakePasswordHasher,
    FakeSecretBox,
    FakeTokenIssuer,
)
from engage_core.testing.storage import (
    InMemoryActivityRepository,
    InMemoryApiKeyRepository,
    InMemoryBulkMetricStore,
    InMemoryIdempotencyStore,
    InMemoryMetricRepository,
    InMemoryOneTimeTokenRepository,
    InMemorySecondFactorRepository,
    InMemorySessionRepository,
    InMemoryUserRepository,
    link_cascade,
)
from engage_core.testing.unit_of_work import InMemoryUnitOfWork
from engage_core.testing.wiring import InMemoryServices, in_memory_services

__all__ = [
    "FakeClock",
    "FakeDashboardCodec",
    "FakeMailer",
    "FakeOneTimePasswords",
    "FakePasswordHasher",
    "FakeSecretBox",
    "FakeTokenIssuer",
    "InMemoryActivityRepository",
    "InMemoryApiKeyRepository",
    "InMemoryBulkMetricStore",
    "InMemoryCache",
    "InMemoryIdempotencyStore",
    "InMemoryMailQueue",
    "InMemoryMetricFeed",
    "InMemoryMetricRepository",
    "InMemoryOneTimeTokenRepository",
    "InMemoryRateLimiter",
    "InMemorySecondFactorRepository",
    "InMemoryServices",
    "InMemorySessionRepository",
    "InMemoryUnitOfWork",
    "InMemoryUserRepository",
    "in_memory_services",
    "link_cascade",
]
