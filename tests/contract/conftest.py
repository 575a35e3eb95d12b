"""One parametrized fixture per port, so the fake and every real adapter meet the same tests.

Each port has a dict below, name → factory. A factory is a small function that
takes the test's ``Env`` and returns one implementation; the port's fixture is
parametrized over the dict's keys, so every contract test of that port runs once
per entry. To hold a new adapter to the contract (the PostgreSQL repositories,
the Redis cache, rate limiter and idempotency store), add ONE entry to its
port's dict; no test changes. A factory gets what it needs from other fixtures
with ``env.fixture("pg_pool")`` (async fixtures too: the port fixtures are sync
on purpose, so that works) and registers clean-up with ``env.on_teardown``.

Stores (repositories, cache, rate limiter, idempotency store) come as a
``Subject``: the implementation, ``advance(seconds)`` to move its time forward,
and ``new_user()`` to store a user who may own rows in it (a foreign key in
PostgreSQL). The fakes jump the shared ``FakeClock``; a real store that reads
its own clock (Redis, PostgreSQL's ``now()``) should ``await asyncio.sleep``
instead, which is why the tests use TTLs and windows of a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

import pytest
from attrs import frozen

from engage_adapters.bcrypt_hasher import BcryptPasswordHasher
from engage_adapters.jwt_tokens import JwtTokenIssuer
from engage_adapters.memory import (
    FakeClock,
    FakePasswordHasher,
    FakeTokenIssuer,
    InMemoryCache,
    InMemoryIdempotencyStore,
    InMemoryMetricRepository,
    InMemoryRateLimiter,
    InMemorySessionRepository,
    InMemoryUserRepository,
    link_cascade,
)
from engage_core.model import Email, User
from engage_core.ports import (
    Cache,
    IdempotencyStore,
    MetricRepository,
    PasswordHasher,
    RateLimiter,
    SessionRepository,
    TokenIssuer,
    UserRepository,
)

P = TypeVar("P")
Advance = Callable[[float], Awaitable[None]]
NewUser = Callable[[], Awaitable[UUID]]

JWT_SECRET = b"s" * 32


@frozen
class Env:
    """What a factory may build on."""

    clock: FakeClock
    request: pytest.FixtureRequest

    def fixture(self, name: str) -> Any:
        return self.request.getfixturevalue(name)

    def on_teardown(self, finalizer: Callable[[], object]) -> None:
        self.request.addfinalizer(finalizer)


@frozen
class Subject(Generic[P]):
    """A store under test, a way to move its time forward, and a way to add an owner."""

    impl: P
    advance: Advance
    new_user: NewUser


Factory = Callable[[Env], Any]


def advancing(clock: FakeClock) -> Advance:
    async def advance(seconds: float) -> None:
        clock.advance(seconds)

    return advance


def adding_users(users: UserRepository, clock: FakeClock) -> NewUser:
    async def new_user() -> UUID:
        user_id = uuid4()
        await users.add(
            User(
                id=user_id,
                email=Email(f"{user_id.hex}@example.com"),
                password_hash="unused",
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
        return user_id

    return new_user


# --- PasswordHasher -------------------------------------------------------------


def bcrypt_hasher(env: Env) -> BcryptPasswordHasher:
    hasher = BcryptPasswordHasher(rounds=4)
    env.on_teardown(hasher.close)
    return hasher


PASSWORD_HASHERS: dict[str, Factory] = {
    "memory": lambda env: FakePasswordHasher(),
    "bcrypt": bcrypt_hasher,
}

# --- TokenIssuer ----------------------------------------------------------------

TOKEN_ISSUERS: dict[str, Factory] = {
    "memory": lambda env: FakeTokenIssuer(env.clock),
    "jwt": lambda env: JwtTokenIssuer(JWT_SECRET),
}

# --- UserRepository -------------------------------------------------------------

USER_REPOSITORIES: dict[str, Factory] = {
    "memory": lambda env: InMemoryUserRepository(),
}

# --- Stores that rows of a user live in -----------------------------------------


def memory_owned(env: Env, store: Any) -> Subject[Any]:
    """``store`` beside an in-memory user repository that cascades deletes into it."""
    users = InMemoryUserRepository()
    link_cascade(users, store)
    return Subject(store, advancing(env.clock), adding_users(users, env.clock))


METRIC_REPOSITORIES: dict[str, Factory] = {
    "memory": lambda env: memory_owned(env, InMemoryMetricRepository()),
}
SESSION_REPOSITORIES: dict[str, Factory] = {
    "memory": lambda env: memory_owned(env, InMemorySessionRepository()),
}
IDEMPOTENCY_STORES: dict[str, Factory] = {
    "memory": lambda env: memory_owned(env, InMemoryIdempotencyStore(env.clock)),
}

# --- Stores keyed by plain strings ----------------------------------------------


async def any_user_id() -> UUID:
    return uuid4()


CACHES: dict[str, Factory] = {
    "memory": lambda env: Subject(InMemoryCache(env.clock), advancing(env.clock), any_user_id),
}
RATE_LIMITERS: dict[str, Factory] = {
    "memory": lambda env: Subject(
        InMemoryRateLimiter(env.clock), advancing(env.clock), any_user_id
    ),
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


@pytest.fixture(params=list(SESSION_REPOSITORIES))
def session_repository(request: pytest.FixtureRequest, env: Env) -> Subject[SessionRepository]:
    return SESSION_REPOSITORIES[request.param](env)


@pytest.fixture(params=list(IDEMPOTENCY_STORES))
def idempotency_store(request: pytest.FixtureRequest, env: Env) -> Subject[IdempotencyStore]:
    return IDEMPOTENCY_STORES[request.param](env)


@pytest.fixture(params=list(CACHES))
def cache(request: pytest.FixtureRequest, env: Env) -> Subject[Cache]:
    return CACHES[request.param](env)


@pytest.fixture(params=list(RATE_LIMITERS))
def rate_limiter(request: pytest.FixtureRequest, env: Env) -> Subject[RateLimiter]:
    return RATE_LIMITERS[request.param](env)
