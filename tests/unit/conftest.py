"""The use cases wired over the public in-memory fakes, with a clock that stands still."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

import pytest
from attrs import frozen

from engage_core import (
    AuthPolicy,
    AuthService,
    BrowserLogin,
    CursorCodec,
    IdempotencyGuard,
    MetricsService,
    Principal,
    Unauthorized,
    User,
    testing,
)
from support.users import adding_users


@frozen
class Account:
    """A signed-up user and the credentials that log them in."""

    email: str
    password: str
    user: User

    @property
    def id(self) -> UUID:
        return self.user.id


@pytest.fixture
def clock() -> testing.FakeClock:
    return testing.FakeClock()


@pytest.fixture
def hasher() -> testing.FakePasswordHasher:
    return testing.FakePasswordHasher()


@pytest.fixture
def tokens(clock: testing.FakeClock) -> testing.FakeTokenIssuer:
    return testing.FakeTokenIssuer(clock)


@pytest.fixture
def users() -> testing.InMemoryUserRepository:
    return testing.InMemoryUserRepository()


@pytest.fixture
def metric_repository() -> testing.InMemoryMetricRepository:
    return testing.InMemoryMetricRepository()


@pytest.fixture
def sessions() -> testing.InMemorySessionRepository:
    return testing.InMemorySessionRepository()


@pytest.fixture
def idempotency_store(clock: testing.FakeClock) -> testing.InMemoryIdempotencyStore:
    return testing.InMemoryIdempotencyStore(clock)


@pytest.fixture(autouse=True)
def _cascade_user_deletion(
    users: testing.InMemoryUserRepository,
    metric_repository: testing.InMemoryMetricRepository,
    sessions: testing.InMemorySessionRepository,
    idempotency_store: testing.InMemoryIdempotencyStore,
) -> None:
    """Deleting a user deletes what they own, as ON DELETE CASCADE does in PostgreSQL."""
    testing.link_cascade(users, metric_repository, sessions, idempotency_store)


@pytest.fixture
def unit_of_work(
    users: testing.InMemoryUserRepository,
    metric_repository: testing.InMemoryMetricRepository,
    sessions: testing.InMemorySessionRepository,
    idempotency_store: testing.InMemoryIdempotencyStore,
) -> testing.InMemoryUnitOfWork:
    return testing.InMemoryUnitOfWork(users, metric_repository, sessions, idempotency_store)


@pytest.fixture
def cache(clock: testing.FakeClock) -> testing.InMemoryCache:
    return testing.InMemoryCache(clock)


@pytest.fixture
def limiter(clock: testing.FakeClock) -> testing.InMemoryRateLimiter:
    return testing.InMemoryRateLimiter(clock)


@pytest.fixture
def cursors() -> CursorCodec:
    return CursorCodec(b"k" * 32)


@pytest.fixture
def policy() -> AuthPolicy:
    return AuthPolicy()


@pytest.fixture
def make_auth(
    users: testing.InMemoryUserRepository,
    sessions: testing.InMemorySessionRepository,
    tokens: testing.FakeTokenIssuer,
    cache: testing.InMemoryCache,
    limiter: testing.InMemoryRateLimiter,
    clock: testing.FakeClock,
    unit_of_work: testing.InMemoryUnitOfWork,
    policy: AuthPolicy,
) -> Callable[[testing.FakePasswordHasher], AuthService]:
    """An AuthService over the shared fakes with the given hasher (to change its settings)."""

    def build(hasher: testing.FakePasswordHasher) -> AuthService:
        return AuthService(
            users=users,
            sessions=sessions,
            hasher=hasher,
            tokens=tokens,
            cache=cache,
            limiter=limiter,
            clock=clock,
            uow=unit_of_work,
            policy=policy,
        )

    return build


@pytest.fixture
def auth(
    make_auth: Callable[[testing.FakePasswordHasher], AuthService],
    hasher: testing.FakePasswordHasher,
) -> AuthService:
    return make_auth(hasher)


@pytest.fixture
def metrics(
    metric_repository: testing.InMemoryMetricRepository,
    clock: testing.FakeClock,
    cursors: CursorCodec,
) -> MetricsService:
    return MetricsService(metrics=metric_repository, clock=clock, cursors=cursors)


@pytest.fixture
def guard(
    idempotency_store: testing.InMemoryIdempotencyStore, unit_of_work: testing.InMemoryUnitOfWork
) -> IdempotencyGuard:
    return IdempotencyGuard(idempotency_store, unit_of_work)


# --- helpers ------------------------------------------------------------------------------


SignUp = Callable[[str, str], Awaitable[Account]]


@pytest.fixture
def sign_up(auth: AuthService) -> SignUp:
    async def sign_up(email: str, password: str) -> Account:
        user = await auth.sign_up(email=email, password=password)
        return Account(email=email, password=password, user=user)

    return sign_up


@pytest.fixture
async def alice(sign_up: SignUp) -> Account:
    return await sign_up("alice@example.com", "alice-password-1")


@pytest.fixture
async def bob(sign_up: SignUp) -> Account:
    return await sign_up("bob@example.org", "bob-password-22")


@pytest.fixture
def log_in(auth: AuthService) -> Callable[[Account], Awaitable[BrowserLogin]]:
    async def log_in(account: Account) -> BrowserLogin:
        return await auth.log_in(email=account.email, password=account.password)

    return log_in


@pytest.fixture
def principal_of() -> Callable[[BrowserLogin], Principal]:
    def principal_of(login: BrowserLogin) -> Principal:
        return Principal(login.user.id, login.session_id)

    return principal_of


@pytest.fixture
def accepted(auth: AuthService) -> Callable[[str], Awaitable[bool]]:
    """Whether ``authenticate`` accepts an access token right now."""

    async def accepted(access_token: str) -> bool:
        try:
            await auth.authenticate(access_token)
        except Unauthorized:
            return False
        return True

    return accepted


@pytest.fixture
def refreshable(auth: AuthService) -> Callable[[str], Awaitable[bool]]:
    """Whether ``refresh`` accepts a refresh token right now (spending it if so)."""

    async def refreshable(refresh_token: str) -> bool:
        try:
            await auth.refresh(refresh_token)
        except Unauthorized:
            return False
        return True

    return refreshable


@pytest.fixture
def new_user_id(
    users: testing.InMemoryUserRepository, clock: testing.FakeClock
) -> Callable[[], Awaitable[UUID]]:
    """Stores a bare user and returns their id: metrics are refused for a user who
    does not exist, as PostgreSQL's foreign key refuses them."""
    return adding_users(users, clock)


@pytest.fixture
async def stranger_id(new_user_id: Callable[[], Awaitable[UUID]]) -> UUID:
    """A user id for metric tests that need no account to log in to."""
    return await new_user_id()
