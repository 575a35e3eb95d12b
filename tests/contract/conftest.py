"""Contract fixtures: one parametrized fixture per port; every test runs once per implementation.

Each port has a dict below, name → factory: a small function that takes the test's
``Env`` and returns one implementation. The port's fixture is parametrized over
the dict's keys. To hold a new adapter to the same contract, add ONE entry to its
port's dict and change no test, e.g. for the PostgreSQL sessions:

    SESSION_REPOSITORIES["postgres"] = lambda env: Subject(
        PostgresSessionRepository(pool := env.fixture("pg_pool")),
        sleeping, adding_users(PostgresUserRepository(pool), env.clock))

``env.fixture`` reaches any other fixture, async ones too (the port fixtures are
sync so that it can); ``env.on_teardown`` registers clean-up. Stores come as a
``Subject``: the implementation, ``advance(seconds)`` and ``new_user()``. The fakes
advance by jumping the shared ``FakeClock``; a store that reads its own clock
(Redis, PostgreSQL's ``now()``) must ``await asyncio.sleep`` instead, which is why
TTLs and windows in the tests are fractions of a second. ``new_user`` stores a
user who may own rows (a foreign key in PostgreSQL) and returns its id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID, uuid4

import pytest
from attrs import frozen

from engage_adapters.bcrypt_hasher import BcryptPasswordHasher
from engage_adapters.dashboard_codec import JsonDashboardCodec
from engage_adapters.jwt_tokens import JwtTokenIssuer
from engage_adapters.postgres.activity import PostgresActivityRepository
from engage_adapters.postgres.api_keys import PostgresApiKeyRepository
from engage_adapters.postgres.bulk import PostgresBulkMetricStore
from engage_adapters.postgres.idempotency import PostgresIdempotencyStore
from engage_adapters.postgres.live import PostgresMetricFeed
from engage_adapters.postgres.metrics import PostgresMetricRepository
from engage_adapters.postgres.rate_limits import PostgresRateLimiter
from engage_adapters.postgres.second_factor import PostgresSecondFactorRepository
from engage_adapters.postgres.sessions import PostgresSessionRepository
from engage_adapters.postgres.transaction import PostgresUnitOfWork
from engage_adapters.postgres.users import PostgresUserRepository
from engage_adapters.redis_breaker import CircuitBreaker, GuardedCache, GuardedRateLimiter
from engage_adapters.redis_store import RedisCache, RedisRateLimiter
from engage_adapters.secret_box import FernetSecretBox
from engage_adapters.totp import PyotpOneTimePasswords
from engage_core.ports import (
    ActivityRepository,
    ApiKeyRepository,
    BulkMetricStore,
    Cache,
    DashboardCodec,
    IdempotencyStore,
    MetricFeed,
    MetricRepository,
    OneTimePasswords,
    PasswordHasher,
    RateLimiter,
    SecondFactorRepository,
    SecretBox,
    SessionRepository,
    TokenIssuer,
    UnitOfWork,
    UserRepository,
)
from engage_core.testing import (
    FakeClock,
    FakeDashboardCodec,
    FakeOneTimePasswords,
    FakePasswordHasher,
    FakeSecretBox,
    FakeTokenIssuer,
    InMemoryActivityRepository,
    InMemoryApiKeyRepository,
    InMemoryBulkMetricStore,
    InMemoryCache,
    InMemoryIdempotencyStore,
    InMemoryMetricFeed,
    InMemoryMetricRepository,
    InMemoryRateLimiter,
    InMemorySecondFactorRepository,
    InMemorySessionRepository,
    InMemoryUnitOfWork,
    InMemoryUserRepository,
    link_cascade,
)
from support.users import NewUser, adding_users

P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)
Advance = Callable[[float], Awaitable[None]]

JWT_SECRET = b"s" * 32


@frozen
class Env:
    """What a factory may build on."""

    clock: FakeClock
    request: pytest.FixtureRequest

    def fixture(self, name: str) -> Any:
        """Another fixture's value, such as ``pg_pool``."""
        return self.request.getfixturevalue(name)

    def on_teardown(self, finalizer: Callable[[], object]) -> None:
        self.request.addfinalizer(finalizer)


@frozen
class Subject(Generic[P_co]):
    """A store under test, a way to move its time forward, and a way to add an owner."""

    impl: P_co
    advance: Advance
    new_user: NewUser


Factory = Callable[[Env], P]


def advancing(clock: FakeClock) -> Advance:
    async def advance(seconds: float) -> None:
        clock.advance(seconds)

    return advance


async def sleeping(seconds: float) -> None:
    """How a store that reads its own clock (Redis, PostgreSQL) lets time pass."""
    await asyncio.sleep(seconds)


# --- PasswordHasher -------------------------------------------------------------


def bcrypt_hasher(env: Env) -> BcryptPasswordHasher:
    hasher = BcryptPasswordHasher(rounds=4)
    env.on_teardown(hasher.close)
    return hasher


PASSWORD_HASHERS: dict[str, Factory[PasswordHasher]] = {
    "memory": lambda env: FakePasswordHasher(),
    "bcrypt": bcrypt_hasher,
}

# --- TokenIssuer ----------------------------------------------------------------

TOKEN_ISSUERS: dict[str, Factory[TokenIssuer]] = {
    "memory": lambda env: FakeTokenIssuer(env.clock),
    "jwt": lambda env: JwtTokenIssuer(JWT_SECRET),
}

# --- UserRepository -------------------------------------------------------------

USER_REPOSITORIES: dict[str, Factory[UserRepository]] = {
    "memory": lambda env: InMemoryUserRepository(),
    "postgres": lambda env: PostgresUserRepository(env.fixture("pg_pool")),
}

# --- Stores that rows of a user live in -----------------------------------------


class _OwnedByUsers(Protocol):
    def forget_user(self, user_id: UUID) -> None: ...


S = TypeVar("S", bound=_OwnedByUsers)


def memory_owned(env: Env, store: S) -> Subject[S]:
    """``store`` beside an in-memory user repository that cascades deletes into it."""
    users = InMemoryUserRepository()
    link_cascade(users, store)
    return Subject(store, advancing(env.clock), adding_users(users, env.clock))


def postgres_owned(env: Env, store: Callable[[Any], P]) -> Subject[P]:
    """A PostgreSQL store on this test's database, with PostgreSQL users to own rows."""
    pool = env.fixture("pg_pool")
    return Subject(store(pool), sleeping, adding_users(PostgresUserRepository(pool), env.clock))


METRIC_REPOSITORIES: dict[str, Factory[Subject[MetricRepository]]] = {
    "memory": lambda env: memory_owned(env, InMemoryMetricRepository()),
    "postgres": lambda env: postgres_owned(env, PostgresMetricRepository),
}


def memory_metrics_and_users(env: Env) -> tuple[Subject[MetricRepository], UserRepository]:
    users, metrics = InMemoryUserRepository(), InMemoryMetricRepository()
    link_cascade(users, metrics)
    return Subject(metrics, advancing(env.clock), adding_users(users, env.clock)), users


def postgres_metrics_and_users(env: Env) -> tuple[Subject[MetricRepository], UserRepository]:
    pool = env.fixture("pg_pool")
    users = PostgresUserRepository(pool)
    metrics = PostgresMetricRepository(pool)
    return Subject(metrics, sleeping, adding_users(users, env.clock)), users


# The metric repository and the users who own its rows, for tests that delete one.
METRICS_AND_USERS: dict[str, Factory[tuple[Subject[MetricRepository], UserRepository]]] = {
    "memory": memory_metrics_and_users,
    "postgres": postgres_metrics_and_users,
}
SESSION_REPOSITORIES: dict[str, Factory[Subject[SessionRepository]]] = {
    "memory": lambda env: memory_owned(env, InMemorySessionRepository()),
    "postgres": lambda env: postgres_owned(env, PostgresSessionRepository),
}


@frozen
class CheckedStorage:
    """Sessions and metrics on the same storage, for work run behind a session's check."""

    sessions: SessionRepository
    metrics: MetricRepository
    new_user: NewUser


def memory_checked(env: Env) -> CheckedStorage:
    users, sessions, metrics = (
        InMemoryUserRepository(),
        InMemorySessionRepository(),
        InMemoryMetricRepository(),
    )
    link_cascade(users, sessions, metrics)
    return CheckedStorage(sessions, metrics, adding_users(users, env.clock))


def postgres_checked(env: Env) -> CheckedStorage:
    pool = env.fixture("pg_pool")
    return CheckedStorage(
        PostgresSessionRepository(pool),
        PostgresMetricRepository(pool),
        adding_users(PostgresUserRepository(pool), env.clock),
    )


CHECKED_STORAGES: dict[str, Factory[CheckedStorage]] = {
    "memory": memory_checked,
    "postgres": postgres_checked,
}
IDEMPOTENCY_STORES: dict[str, Factory[Subject[IdempotencyStore]]] = {
    "memory": lambda env: memory_owned(env, InMemoryIdempotencyStore(env.clock)),
    "postgres": lambda env: postgres_owned(env, PostgresIdempotencyStore),
}

# --- BulkMetricStore -------------------------------------------------------------


@frozen
class BulkStorage:
    """A bulk store and the metric repository on the same storage: rows stored
    before a load, and what a load stored, are seen through ``metrics``."""

    store: BulkMetricStore
    metrics: MetricRepository


def memory_bulk(env: Env) -> Subject[BulkStorage]:
    users, metrics = InMemoryUserRepository(), InMemoryMetricRepository()
    link_cascade(users, metrics)
    storage = BulkStorage(InMemoryBulkMetricStore(users, metrics), metrics)
    return Subject(storage, advancing(env.clock), adding_users(users, env.clock))


def postgres_bulk(env: Env) -> Subject[BulkStorage]:
    return postgres_owned(
        env, lambda pool: BulkStorage(PostgresBulkMetricStore(pool), PostgresMetricRepository(pool))
    )


BULK_METRIC_STORES: dict[str, Factory[Subject[BulkStorage]]] = {
    "memory": memory_bulk,
    "postgres": postgres_bulk,
}

# --- ApiKeyRepository -------------------------------------------------------------


def memory_api_keys(env: Env) -> Subject[ApiKeyRepository]:
    users = InMemoryUserRepository()
    keys = InMemoryApiKeyRepository(users)  # reads the users' emails for every_key
    link_cascade(users, keys)
    return Subject(keys, advancing(env.clock), adding_users(users, env.clock))


API_KEY_REPOSITORIES: dict[str, Factory[Subject[ApiKeyRepository]]] = {
    "memory": memory_api_keys,
    "postgres": lambda env: postgres_owned(env, PostgresApiKeyRepository),
}


@frozen
class CheckedKeys:
    """Keys, the limits their check counts uses in, and metrics on the same
    storage, for work run behind a key's check."""

    keys: ApiKeyRepository
    limits: RateLimiter
    metrics: MetricRepository
    new_user: NewUser


def memory_checked_keys(env: Env) -> CheckedKeys:
    users, metrics = InMemoryUserRepository(), InMemoryMetricRepository()
    limits = InMemoryRateLimiter(env.clock)
    keys = InMemoryApiKeyRepository(users, limits)
    link_cascade(users, keys, metrics)
    return CheckedKeys(keys, limits, metrics, adding_users(users, env.clock))


def postgres_checked_keys(env: Env) -> CheckedKeys:
    pool, prefix = env.fixture("pg_pool"), f"test:{uuid4().hex}:"
    return CheckedKeys(
        PostgresApiKeyRepository(pool, limit_prefix=prefix),
        PostgresRateLimiter(pool, prefix=prefix),
        PostgresMetricRepository(pool),
        adding_users(PostgresUserRepository(pool), env.clock),
    )


CHECKED_KEYS: dict[str, Factory[CheckedKeys]] = {
    "memory": memory_checked_keys,
    "postgres": postgres_checked_keys,
}

# --- MetricFeed ------------------------------------------------------------------


@frozen
class FeedStorage:
    """The live stream's feed and the repositories on the same storage whose
    writes it tells of and reads back."""

    feed: MetricFeed
    users: UserRepository
    metrics: MetricRepository
    sessions: SessionRepository
    keys: ApiKeyRepository
    # A feed of another process on the same storage; None when the storage is
    # only this process's (in memory).
    sibling: Callable[[], MetricFeed] | None = None


def memory_feed(env: Env) -> Subject[FeedStorage]:
    users, metrics = InMemoryUserRepository(), InMemoryMetricRepository()
    sessions, keys = InMemorySessionRepository(), InMemoryApiKeyRepository(users)
    link_cascade(users, metrics, sessions, keys)
    feed = InMemoryMetricFeed(metrics, sessions, keys)
    storage = FeedStorage(feed, users, metrics, sessions, keys)
    return Subject(storage, advancing(env.clock), adding_users(users, env.clock))


def postgres_feed(env: Env) -> Subject[FeedStorage]:
    pool = env.fixture("pg_pool")
    users = PostgresUserRepository(pool)
    storage = FeedStorage(
        PostgresMetricFeed(pool),
        users,
        PostgresMetricRepository(pool),
        PostgresSessionRepository(pool),
        PostgresApiKeyRepository(pool),
        sibling=lambda: PostgresMetricFeed(pool),
    )
    return Subject(storage, sleeping, adding_users(users, env.clock))


METRIC_FEEDS: dict[str, Factory[Subject[FeedStorage]]] = {
    "memory": memory_feed,
    "postgres": postgres_feed,
}

# --- UnitOfWork -----------------------------------------------------------------


@frozen
class Transactional:
    """A unit of work and repositories on the same storage, which take part in it."""

    uow: UnitOfWork
    users: UserRepository
    sessions: SessionRepository


def memory_transactional(env: Env) -> Transactional:
    users, sessions = InMemoryUserRepository(), InMemorySessionRepository()
    link_cascade(users, sessions)
    return Transactional(InMemoryUnitOfWork(users, sessions), users, sessions)


def postgres_transactional(env: Env) -> Transactional:
    pool = env.fixture("pg_pool")
    return Transactional(
        PostgresUnitOfWork(pool), PostgresUserRepository(pool), PostgresSessionRepository(pool)
    )


UNITS_OF_WORK: dict[str, Factory[Transactional]] = {
    "memory": memory_transactional,
    "postgres": postgres_transactional,
}

# --- Stores keyed by plain strings ----------------------------------------------


async def any_user_id() -> UUID:
    """No user table behind these stores: any id will do."""
    return uuid4()


def redis_keyed(env: Env, store: Callable[..., P], *, cluster: bool = False) -> Subject[P]:
    """A Redis store on the session's server (or its Redis Cluster), under a key
    prefix of this test's own."""
    client = env.fixture("redis_cluster_client" if cluster else "redis_client")
    return Subject(store(client, prefix=f"test:{uuid4().hex}"), sleeping, any_user_id)


def guarded(subject: Subject[Any], guard: Callable[[Any, CircuitBreaker], P]) -> Subject[P]:
    """A Redis store behind the circuit breaker, as the application uses it."""
    return Subject(guard(subject.impl, CircuitBreaker("redis")), subject.advance, subject.new_user)


CACHES: dict[str, Factory[Subject[Cache]]] = {
    "memory": lambda env: Subject(InMemoryCache(env.clock), advancing(env.clock), any_user_id),
    "redis": lambda env: redis_keyed(env, RedisCache),
    "redis-guarded": lambda env: guarded(redis_keyed(env, RedisCache), GuardedCache),
    "redis-cluster": lambda env: redis_keyed(env, RedisCache, cluster=True),
}
DASHBOARD_CODECS: dict[str, Factory[DashboardCodec]] = {
    "memory": lambda env: FakeDashboardCodec(),
    "json": lambda env: JsonDashboardCodec(),
}
RATE_LIMITERS: dict[str, Factory[Subject[RateLimiter]]] = {
    "memory": lambda env: Subject(
        InMemoryRateLimiter(env.clock), advancing(env.clock), any_user_id
    ),
    "redis": lambda env: redis_keyed(env, RedisRateLimiter),
    "redis-guarded": lambda env: guarded(redis_keyed(env, RedisRateLimiter), GuardedRateLimiter),
    "redis-cluster": lambda env: redis_keyed(env, RedisRateLimiter, cluster=True),
    "postgres": lambda env: Subject(
        PostgresRateLimiter(env.fixture("pg_pool"), prefix=f"test:{uuid4().hex}:"),
        sleeping,
        any_user_id,
    ),
}

# --- Second factor, activity, secrets at rest, one-time passwords ---------------

SECOND_FACTOR_REPOSITORIES: dict[str, Factory[Subject[SecondFactorRepository]]] = {
    "memory": lambda env: memory_owned(env, InMemorySecondFactorRepository()),
    "postgres": lambda env: postgres_owned(env, PostgresSecondFactorRepository),
}
ACTIVITY_REPOSITORIES: dict[str, Factory[Subject[ActivityRepository]]] = {
    "memory": lambda env: memory_owned(env, InMemoryActivityRepository()),
    "postgres": lambda env: postgres_owned(env, PostgresActivityRepository),
}
SECRET_BOXES: dict[str, Factory[SecretBox]] = {
    "memory": lambda env: FakeSecretBox(),
    "fernet": lambda env: FernetSecretBox([b"contract-test key, 32 bytes or more"]),
}
ONE_TIME_PASSWORDS: dict[str, Factory[OneTimePasswords]] = {
    "memory": lambda env: FakeOneTimePasswords(),
    "pyotp": lambda env: PyotpOneTimePasswords(),
}


# --- Fixtures -------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the wall clock's current second: real adapters (JWT, Redis, PostgreSQL)
    # read the wall clock, so "now" is the same moment for fakes and real ones.
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def env(clock: FakeClock, request: pytest.FixtureRequest) -> Env:
    return Env(clock, request)


@pytest.fixture(params=list(PASSWORD_HASHERS))
def password_hasher(request: pytest.FixtureRequest, env: Env) -> PasswordHasher:
    return PASSWORD_HASHERS[request.param](env)


@pytest.fixture(params=list(TOKEN_ISSUERS))
def token_issuer(request: pytest.FixtureRequest, env: Env) -> TokenIssuer:
    return TOKEN_ISSUERS[request.param](env)


@pytest.fixture(params=list(USER_REPOSITORIES))
def user_repository(request: pytest.FixtureRequest, env: Env) -> UserRepository:
    return USER_REPOSITORIES[request.param](env)


@pytest.fixture(params=list(METRIC_REPOSITORIES))
def metric_repository(request: pytest.FixtureRequest, env: Env) -> Subject[MetricRepository]:
    return METRIC_REPOSITORIES[request.param](env)


@pytest.fixture(params=list(METRICS_AND_USERS))
def metric_user_store(
    request: pytest.FixtureRequest, env: Env
) -> tuple[Subject[MetricRepository], UserRepository]:
    return METRICS_AND_USERS[request.param](env)


@pytest.fixture(params=list(BULK_METRIC_STORES))
def bulk_metric_store(request: pytest.FixtureRequest, env: Env) -> Subject[BulkStorage]:
    return BULK_METRIC_STORES[request.param](env)


@pytest.fixture(params=list(SESSION_REPOSITORIES))
def session_repository(request: pytest.FixtureRequest, env: Env) -> Subject[SessionRepository]:
    return SESSION_REPOSITORIES[request.param](env)


@pytest.fixture(params=list(CHECKED_STORAGES))
def checked_storage(request: pytest.FixtureRequest, env: Env) -> CheckedStorage:
    return CHECKED_STORAGES[request.param](env)


@pytest.fixture(params=list(IDEMPOTENCY_STORES))
def idempotency_store(request: pytest.FixtureRequest, env: Env) -> Subject[IdempotencyStore]:
    return IDEMPOTENCY_STORES[request.param](env)


@pytest.fixture(params=list(API_KEY_REPOSITORIES))
def api_key_repository(request: pytest.FixtureRequest, env: Env) -> Subject[ApiKeyRepository]:
    return API_KEY_REPOSITORIES[request.param](env)


@pytest.fixture(params=list(CHECKED_KEYS))
def checked_keys(request: pytest.FixtureRequest, env: Env) -> CheckedKeys:
    return CHECKED_KEYS[request.param](env)


@pytest.fixture(params=list(METRIC_FEEDS))
def metric_feed(request: pytest.FixtureRequest, env: Env) -> Subject[FeedStorage]:
    return METRIC_FEEDS[request.param](env)


@pytest.fixture(params=list(UNITS_OF_WORK))
def transactional(request: pytest.FixtureRequest, env: Env) -> Transactional:
    return UNITS_OF_WORK[request.param](env)


@pytest.fixture(params=list(CACHES))
def cache_store(request: pytest.FixtureRequest, env: Env) -> Subject[Cache]:
    return CACHES[request.param](env)


@pytest.fixture(params=list(DASHBOARD_CODECS))
def dashboard_codec(request: pytest.FixtureRequest, env: Env) -> DashboardCodec:
    return DASHBOARD_CODECS[request.param](env)


@pytest.fixture(params=list(RATE_LIMITERS))
def rate_limiter(request: pytest.FixtureRequest, env: Env) -> Subject[RateLimiter]:
    return RATE_LIMITERS[request.param](env)


@pytest.fixture(params=list(SECOND_FACTOR_REPOSITORIES))
def second_factor_repository(
    request: pytest.FixtureRequest, env: Env
) -> Subject[SecondFactorRepository]:
    return SECOND_FACTOR_REPOSITORIES[request.param](env)


@pytest.fixture(params=list(ACTIVITY_REPOSITORIES))
def activity_repository(request: pytest.FixtureRequest, env: Env) -> Subject[ActivityRepository]:
    return ACTIVITY_REPOSITORIES[request.param](env)


@pytest.fixture(params=list(SECRET_BOXES))
def secret_box(request: pytest.FixtureRequest, env: Env) -> SecretBox:
    return SECRET_BOXES[request.param](env)


@pytest.fixture(params=list(ONE_TIME_PASSWORDS))
def one_time_passwords(request: pytest.FixtureRequest, env: Env) -> OneTimePasswords:
    return ONE_TIME_PASSWORDS[request.param](env)
