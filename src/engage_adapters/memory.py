"""In-memory fakes of every engage_core port.

Public and supported: another service can test against them without a
database. They pass the same contract tests as the real adapters. They are
not safe across threads or processes, only within one event loop.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import secrets
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID

import attrs
from attrs import define, field

from engage_core.errors import Conflict, Unauthorized
from engage_core.model import (
    ActivityEntry,
    DeviceSession,
    Email,
    EngagementMetric,
    MetricDraft,
    MetricType,
    MetricValue,
    MfaChallenge,
    OneTimeToken,
    Password,
    Session,
    Timestamp,
    TokenPurpose,
    TotpFactor,
    User,
)
from engage_core.ports import (
    AccessClaims,
    ActivityQuery,
    Clock,
    ExportedMetric,
    LoadOutcome,
    MailMessage,
    MailStatus,
    QueuedMail,
    RateDecision,
    Reservation,
    RowFault,
    StagedMetric,
    StoredResponse,
)
from engage_core.queries import CursorCodec, MetricPageQuery, Position, Series, SummaryQuery
from engage_core.services.api_keys import LAST_USED_RESOLUTION, ApiKey, OwnedApiKey
from engage_core.services.auth import AuthPolicy, AuthService
from engage_core.services.idempotency import IdempotencyGuard
from engage_core.services.live import AccessEnded, GrantId, Listening, MetricsAdded, Notice
from engage_core.services.metrics import MetricsService
from engage_core.summaries import Aggregate, in_query, summarize

__all__ = [
    "FakeClock",
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


@define
class FakeClock:
    """A clock that stands still until told to move."""

    current: datetime = field(factory=lambda: datetime(2026, 1, 1, 12, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta | float) -> None:
        self.current += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)


def _seconds_from(clock: Clock | None) -> Callable[[], float]:
    """Seconds for expiry: the given clock's (so tests can jump), else monotonic."""
    if clock is None:
        return time.monotonic
    return lambda: clock.now().timestamp()


class InMemoryUserRepository:
    def __init__(self) -> None:
        self._by_id: dict[UUID, User] = {}
        self._by_email: dict[str, UUID] = {}
        self.on_delete: list[Callable[[UUID], None]] = []

    def checkpoint(self) -> Callable[[], None]:
        by_id, by_email = copy.deepcopy((self._by_id, self._by_email))

        def restore() -> None:
            self._by_id, self._by_email = by_id, by_email

        return restore

    async def add(self, user: User) -> None:
        key = user.email.canonical
        if key in self._by_email:
            raise Conflict("an account with this email already exists")
        self._by_id[user.id] = attrs.evolve(user)
        self._by_email[key] = user.id

    async def get(self, user_id: UUID) -> User | None:
        user = self._by_id.get(user_id)
        return attrs.evolve(user) if user else None

    async def get_by_email(self, canonical_email: str) -> User | None:
        user_id = self._by_email.get(canonical_email.lower())
        return await self.get(user_id) if user_id else None

    async def set_password_hash(self, user_id: UUID, password_hash: str, at: datetime) -> None:
        user = self._by_id.get(user_id)
        if user is not None:
            user.password_hash = password_hash
            user.updated_at = at

    async def delete(self, user_id: UUID) -> bool:
        user = self._by_id.pop(user_id, None)
        if user is None:
            return False
        del self._by_email[user.email.canonical]
        for cascade in self.on_delete:
            cascade(user_id)
        return True

    async def list(self, *, after_email: str | None = None, limit: int = 100) -> Sequence[User]:
        keys = sorted(k for k in self._by_email if after_email is None or k > after_email.lower())
        return [attrs.evolve(self._by_id[self._by_email[k]]) for k in keys[:limit]]

    async def mark_email_verified(self, user_id: UUID, email: Email, at: datetime) -> bool:
        user = self._by_id.get(user_id)
        if user is None or user.email.canonical != email.canonical:
            return False
        user.email_verified, user.updated_at = True, at
        return True

    async def change_email(self, user_id: UUID, email: Email, at: datetime) -> bool:
        user = self._by_id.get(user_id)
        if user is None:
            return False
        owner = self._by_email.get(email.canonical)
        if owner is not None and owner != user_id:
            raise Conflict("an account with this email already exists")
        del self._by_email[user.email.canonical]
        self._by_email[email.canonical] = user_id
        user.email, user.email_verified, user.updated_at = email, True, at
        return True


class InMemoryMetricRepository:
    def __init__(self) -> None:
        self._rows: dict[UUID, list[EngagementMetric]] = {}
        self._ids = itertools.count(1)
        # Told of each metric stored (the live stream's feed listens here).
        self.on_added: list[Callable[[EngagementMetric], None]] = []

    def forget_user(self, user_id: UUID) -> None:
        self._rows.pop(user_id, None)

    def checkpoint(self) -> Callable[[], None]:
        rows = copy.deepcopy(self._rows)

        def restore() -> None:
            self._rows = rows  # ids are not given back, as with a PostgreSQL sequence

        return restore

    async def add(self, user_id: UUID, draft: MetricDraft) -> EngagementMetric:
        metric = EngagementMetric(
            id=next(self._ids),
            user_id=user_id,
            metric_type=draft.metric_type,
            metric_value=draft.metric_value,
            recorded_at=draft.recorded_at.value,
        )
        self._rows.setdefault(user_id, []).append(metric)
        for observe in self.on_added:
            observe(metric)
        return metric

    async def add_many(self, user_id: UUID, drafts: Sequence[MetricDraft]) -> int:
        for draft in drafts:  # no await between rows: all or nothing within the loop
            await self.add(user_id, draft)
        return len(drafts)

    async def page(self, user_id: UUID, query: MetricPageQuery) -> Sequence[EngagementMetric]:
        def wanted(m: EngagementMetric) -> bool:
            return (
                (query.metric_type is None or m.metric_type == query.metric_type)
                and (query.since is None or m.recorded_at >= query.since)
                and (query.until is None or m.recorded_at < query.until)
                and (query.after is None or Position(m.recorded_at, m.id) < query.after)
            )

        rows = [m for m in self._rows.get(user_id, []) if wanted(m)]
        rows.sort(key=lambda m: (m.recorded_at, m.id), reverse=True)
        return rows[: query.limit]

    async def summarize(self, user_id: UUID, query: SummaryQuery) -> Sequence[Series]:
        rows = self._rows.get(user_id, [])
        return summarize((Aggregate.of(m) for m in rows if in_query(m, query)), query)


class InMemorySessionRepository:
    def __init__(self) -> None:
        self._by_id: dict[UUID, Session] = {}
        # Told of each session that ends other than by a refresh's rotation.
        self.on_ended: list[Callable[[Session], None]] = []

    def forget_user(self, user_id: UUID) -> None:
        for session_id in [s.id for s in self._by_id.values() if s.user_id == user_id]:
            session = self._by_id.pop(session_id)
            if session.ended_at is None:
                self._ended(session)

    def _ended(self, session: Session) -> None:
        for observe in self.on_ended:
            observe(session)

    def checkpoint(self) -> Callable[[], None]:
        by_id = copy.deepcopy(self._by_id)

        def restore() -> None:
            self._by_id = by_id

        return restore

    async def add(self, session: Session) -> None:
        self._by_id[session.id] = attrs.evolve(session)

    async def get(self, session_id: UUID) -> Session | None:
        session = self._by_id.get(session_id)
        return attrs.evolve(session) if session else None

    async def find_by_token_hash(self, token_hash: str) -> Session | None:
        for session in self._by_id.values():
            if hmac.compare_digest(session.token_hash.encode(), token_hash.encode()):
                return attrs.evolve(session)
        return None

    async def rotate(self, old_id: UUID, new: Session, at: datetime) -> bool:
        old = self._by_id.get(old_id)
        if old is None or not old.is_live(at):
            return False
        old.ended_at, old.end_reason = at, "rotated"
        await self.add(new)
        return True

    async def end(self, session_id: UUID, at: datetime, reason: str) -> bool:
        session = self._by_id.get(session_id)
        if session is None or session.ended_at is not None:
            return False
        session.ended_at, session.end_reason = at, reason
        self._ended(session)
        return True

    async def end_family(self, family_id: UUID, at: datetime, reason: str) -> list[UUID]:
        return self._end_where(lambda s: s.family_id == family_id, at, reason)

    async def end_all_for_user(
        self, user_id: UUID, at: datetime, reason: str, *, keep_family: UUID | None = None
    ) -> list[UUID]:
        return self._end_where(
            lambda s: s.user_id == user_id and s.family_id != keep_family, at, reason
        )

    async def live_ids_for_user(self, user_id: UUID, at: datetime) -> list[UUID]:
        return [s.id for s in self._by_id.values() if s.user_id == user_id and s.is_live(at)]

    async def touch(self, session_id: UUID, at: datetime, *, unless_after: datetime) -> None:
        session = self._by_id.get(session_id)
        if session is not None and (
            session.last_seen_at is None or session.last_seen_at <= unless_after
        ):
            session.last_seen_at = at

    async def has_sessions(self, user_id: UUID, *, user_agent: str | None = None) -> bool:
        return any(
            s.user_id == user_id and (user_agent is None or s.client.user_agent == user_agent)
            for s in self._by_id.values()
        )

    async def live_devices(self, user_id: UUID, at: datetime) -> list[DeviceSession]:
        first: dict[UUID, datetime] = {}
        for s in self._by_id.values():
            if s.user_id == user_id:
                first[s.family_id] = min(first.get(s.family_id, s.created_at), s.created_at)
        devices = [
            DeviceSession(
                id=s.family_id,
                signed_in_at=first[s.family_id],
                last_seen_at=s.last_seen_at or s.created_at,
                client=s.client,
            )
            for s in self._by_id.values()
            if s.user_id == user_id and s.is_live(at)
        ]
        return sorted(devices, key=lambda d: (d.signed_in_at, d.id), reverse=True)

    def _end_where(self, match: Callable[[Session], bool], at: datetime, reason: str) -> list[UUID]:
        ended = []
        for session in self._by_id.values():
            if match(session) and session.is_live(at):
                session.ended_at, session.end_reason = at, reason
                ended.append(session.id)
                self._ended(session)
        return ended


class _OwnedByUsers(Protocol):
    def forget_user(self, user_id: UUID) -> None: ...


def link_cascade(users: InMemoryUserRepository, *owned: _OwnedByUsers) -> None:
    """Make deleting a user delete what they own (metrics, sessions, idempotency
    keys) in the given fakes, as the database's ON DELETE CASCADE does."""
    users.on_delete.extend(store.forget_user for store in owned)


class _Restorable(Protocol):
    def checkpoint(self) -> Callable[[], None]:
        """A function that puts the store's rows back as they are now."""
        ...


@define
class _Unit:
    owner: InMemoryUnitOfWork
    restore: list[Callable[[], None]]
    after_commit: list[Callable[[], Awaitable[object]]] = field(factory=list)
    open: bool = True


_current_unit: ContextVar[_Unit | None] = ContextVar("engage_memory_unit", default=None)


class InMemoryUnitOfWork:
    """Units of work over the given fakes: a block copies their rows on entry and
    puts the copy back if it fails. Units run one at a time (a lock), but other
    tasks' single operations do not wait: they see a unit's writes before it
    commits, and a rollback undoes what they wrote meanwhile. Tests that need
    isolation between tasks run over PostgreSQL."""

    def __init__(self, *stores: _Restorable) -> None:
        self._stores = stores
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        outer = self._bound()
        if outer is not None:
            with self._block() as inner:
                yield
            outer.after_commit.extend(inner.after_commit)
            return
        async with self._lock:
            with self._block() as unit:
                yield
        for action in unit.after_commit:
            await action()

    async def after_commit(self, action: Callable[[], Awaitable[object]]) -> None:
        unit = self._bound()
        if unit is None:
            await action()
        else:
            unit.after_commit.append(action)

    def _bound(self) -> _Unit | None:
        unit = _current_unit.get()
        return unit if unit is not None and unit.open and unit.owner is self else None

    @contextmanager
    def _block(self) -> Iterator[_Unit]:
        unit = _Unit(self, [store.checkpoint() for store in self._stores])
        token = _current_unit.set(unit)
        try:
            yield unit
        except BaseException:
            for restore in unit.restore:
                restore()
            raise
        finally:
            unit.open = False
            _current_unit.reset(token)


class FakePasswordHasher:
    """Fast and insecure: a salted SHA-256. For tests only, never for real passwords.

    Hashes are ``fake$<rounds>$<salt>$<digest>``; ``rounds`` only marks the
    settings a hash was made with, so rehash-on-login can be tested.
    """

    def __init__(self, rounds: int = 1) -> None:
        self.rounds = rounds
        self.hash_calls = 0
        self.verify_calls = 0

    async def hash(self, password: Password) -> str:
        self.hash_calls += 1
        salt = secrets.token_hex(8)
        return f"fake${self.rounds}${salt}${self._digest(salt, password)}"

    async def verify(self, password: Password, password_hash: str) -> bool:
        self.verify_calls += 1
        parts = password_hash.split("$")
        if len(parts) != 4 or parts[0] != "fake":
            return False
        return hmac.compare_digest(parts[3].encode(), self._digest(parts[2], password).encode())

    def needs_rehash(self, password_hash: str) -> bool:
        parts = password_hash.split("$")
        return len(parts) != 4 or parts[1] != str(self.rounds)

    @staticmethod
    def _digest(salt: str, password: Password) -> str:
        return hashlib.sha256(f"{salt}:{password.value}".encode()).hexdigest()


class FakeTokenIssuer:
    """Opaque random tokens mapped to their claims in memory; expiry from a clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._claims: dict[str, AccessClaims] = {}

    async def issue(self, claims: AccessClaims) -> str:
        token = f"fake.{secrets.token_urlsafe(24)}"
        self._claims[token] = claims
        return token

    async def verify(self, token: str) -> AccessClaims:
        claims = self._claims.get(token)
        if claims is None:
            raise Unauthorized("authentication required", reason="unknown token")
        if self._clock.now() >= claims.expires_at:
            raise Unauthorized("authentication required", reason="token expired")
        return claims


class InMemoryCache:
    """A dict with expiry. Per process: not shared between workers."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._now = _seconds_from(clock)
        self._items: dict[str, tuple[bytes, float]] = {}

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= self._now():
            del self._items[key]
            return None
        return item[0]

    async def set(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool:
        if only_if_absent and await self.get(key) is not None:
            return False
        self._items[key] = (value, self._now() + ttl)
        self._evict_expired_sometimes()
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._items.pop(key, None)

    async def incr(self, key: str) -> int:
        current = await self.get(key)
        value = int(current or b"0") + 1
        expires = self._items[key][1] if key in self._items else float("inf")
        self._items[key] = (str(value).encode(), expires)
        return value

    def _evict_expired_sometimes(self) -> None:
        if len(self._items) % 1024 == 0:
            now = self._now()
            for key in [k for k, (_, exp) in self._items.items() if exp <= now]:
                del self._items[key]


class InMemoryRateLimiter:
    """A sliding-window log per key. Per process: not shared between workers."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._now = _seconds_from(clock)
        self._events: dict[str, deque[float]] = {}

    async def hit(self, key: str, *, limit: int, window: float) -> RateDecision:
        decision = await self.peek(key, limit=limit, window=window)
        if decision.allowed:
            self._events.setdefault(key, deque()).append(self._now())
            return RateDecision(True, decision.remaining - 1, 0.0)
        return decision

    async def peek(self, key: str, *, limit: int, window: float) -> RateDecision:
        now = self._now()
        events = self._events.get(key)
        if events is not None:
            while events and events[0] <= now - window:
                events.popleft()
            if not events:
                del self._events[key]
                events = None
        count = len(events) if events else 0
        if count < limit:
            return RateDecision(True, limit - count, 0.0)
        assert events is not None
        # Allowed again once the oldest event that keeps us at the limit leaves the window.
        return RateDecision(False, 0, max(0.0, events[count - limit] + window - now))

    async def reset(self, key: str) -> None:
        self._events.pop(key, None)


class InMemoryIdempotencyStore:
    def __init__(self, clock: Clock | None = None) -> None:
        self._now = _seconds_from(clock)
        # (owner, key) -> (fingerprint, response or None while running, expiry)
        self._items: dict[tuple[UUID, str], tuple[str, StoredResponse | None, float]] = {}

    async def reserve(
        self, owner: UUID, key: str, fingerprint: str, *, lease: float
    ) -> Reservation:
        item = self._items.get((owner, key))
        if item is not None and item[2] > self._now():
            return Reservation(first=False, fingerprint=item[0], response=item[1])
        self._items[(owner, key)] = (fingerprint, None, self._now() + lease)
        return Reservation(first=True)

    async def complete(
        self, owner: UUID, key: str, response: StoredResponse, *, ttl: float
    ) -> None:
        item = self._items.get((owner, key))
        if item is not None:
            self._items[(owner, key)] = (item[0], response, self._now() + ttl)

    async def release(self, owner: UUID, key: str) -> None:
        item = self._items.get((owner, key))
        if item is not None and item[1] is None:
            del self._items[(owner, key)]

    def forget_user(self, user_id: UUID) -> None:
        for owner_key in [k for k in self._items if k[0] == user_id]:
            del self._items[owner_key]

    def checkpoint(self) -> Callable[[], None]:
        items = dict(self._items)  # its values are immutable

        def restore() -> None:
            self._items = items

        return restore


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


class InMemoryBulkMetricStore:
    """The bulk port over the in-memory user and metric repositories."""

    def __init__(self, users: InMemoryUserRepository, metrics: InMemoryMetricRepository) -> None:
        self._users = users
        self._metrics = metrics

    async def load(
        self, rows: Iterable[StagedMetric], *, commit: Callable[[], bool]
    ) -> LoadOutcome:
        staged = list(rows)
        owners: dict[str, UUID | None] = {}
        unknown: list[RowFault] = []
        for row in staged:
            if row.email not in owners:
                user = await self._users.get_by_email(row.email)
                owners[row.email] = user.id if user is not None else None
            if owners[row.email] is None:
                unknown.append(RowFault(row.line, f"email {row.email} is not a user"))
        if unknown or not commit():
            return LoadOutcome(
                committed=False, unknown_emails=tuple(unknown[:20]), unknown_email_rows=len(unknown)
            )
        # Equal to a metric stored before this load: rows equal to each other all go in.
        stored_before = {
            (owner, m.metric_type.value, m.recorded_at, m.metric_value.value)
            for owner in {o for o in owners.values() if o is not None}
            for m in self._metrics._rows.get(owner, [])
        }
        inserted = 0
        for row in staged:
            owner = owners[row.email]
            assert owner is not None  # unknown emails returned above
            if (owner, row.metric_type, row.recorded_at, row.metric_value) in stored_before:
                continue
            await self._metrics.add(
                owner,
                MetricDraft(
                    metric_type=MetricType(row.metric_type),
                    metric_value=MetricValue(row.metric_value),
                    recorded_at=Timestamp(row.recorded_at),
                ),
            )
            inserted += 1
        return LoadOutcome(committed=True, inserted=inserted, skipped=len(staged) - inserted)

    async def export(
        self, *, user_id: UUID | None, since: datetime | None, until: datetime | None
    ) -> AsyncGenerator[ExportedMetric, None]:
        for owner, metrics in list(self._metrics._rows.items()):
            if user_id is not None and owner != user_id:
                continue
            user = await self._users.get(owner)
            if user is None:
                continue
            for m in sorted(metrics, key=lambda m: (m.recorded_at, m.id)):
                if (since is None or m.recorded_at >= since) and (
                    until is None or m.recorded_at < until
                ):
                    yield ExportedMetric(
                        user.email.value, m.metric_type.value, m.metric_value.value, m.recorded_at
                    )


class InMemoryOneTimeTokenRepository:
    def __init__(self) -> None:
        self._by_hash: dict[str, OneTimeToken] = {}

    def forget_user(self, user_id: UUID) -> None:
        for token_hash in [h for h, t in self._by_hash.items() if t.user_id == user_id]:
            del self._by_hash[token_hash]

    def checkpoint(self) -> Callable[[], None]:
        by_hash = dict(self._by_hash)  # its values are immutable

        def restore() -> None:
            self._by_hash = by_hash

        return restore

    async def add(self, token: OneTimeToken) -> None:
        self._by_hash[token.token_hash] = token

    async def find(
        self, token_hash: str, purpose: TokenPurpose, at: datetime
    ) -> OneTimeToken | None:
        token = self._by_hash.get(token_hash)
        if token is None or token.purpose is not purpose or not token.is_usable(at):
            return None
        return token

    async def use(
        self, token_hash: str, purpose: TokenPurpose, at: datetime
    ) -> OneTimeToken | None:
        token = await self.find(token_hash, purpose, at)
        if token is not None:  # no await since the check: no other use in between
            self._by_hash[token_hash] = attrs.evolve(token, used_at=at)
        return token

    async def revoke(self, user_id: UUID, purposes: Collection[TokenPurpose], at: datetime) -> int:
        revoked = 0
        for token_hash, token in list(self._by_hash.items()):
            if token.user_id == user_id and token.purpose in purposes and token.used_at is None:
                self._by_hash[token_hash] = attrs.evolve(token, used_at=at)
                revoked += 1
        return revoked


class InMemoryMailQueue:
    """The outbox in a dict. ``messages()`` lists what was queued, for tests."""

    def __init__(self) -> None:
        self._items: dict[UUID, QueuedMail] = {}

    def checkpoint(self) -> Callable[[], None]:
        items = dict(self._items)  # its values are immutable

        def restore() -> None:
            self._items = items

        return restore

    def messages(self) -> list[MailMessage]:
        """Every message queued, oldest first, whatever its state."""
        return [q.message for q in sorted(self._items.values(), key=lambda q: q.created_at)]

    async def enqueue(self, message: MailMessage, at: datetime) -> None:
        self._items[message.id] = QueuedMail(
            message=message, status=MailStatus.QUEUED, created_at=at, next_attempt_at=at
        )

    async def claim(self, at: datetime, *, limit: int, lease: timedelta) -> Sequence[QueuedMail]:
        due = sorted(
            (
                q
                for q in self._items.values()
                if q.status is MailStatus.QUEUED
                and q.next_attempt_at is not None
                and q.next_attempt_at <= at
            ),
            key=lambda q: (q.next_attempt_at, q.created_at),
        )[:limit]
        claimed = []
        for item in due:
            item = attrs.evolve(item, attempts=item.attempts + 1, next_attempt_at=at + lease)
            self._items[item.message.id] = item
            claimed.append(item)
        return sorted(claimed, key=lambda q: q.created_at)

    async def mark_sent(self, message_id: UUID, at: datetime, receipt: str) -> None:
        item = self._items.get(message_id)
        if item is not None:
            message = attrs.evolve(item.message, text="", html="", link=None)
            self._items[message_id] = attrs.evolve(
                item,
                message=message,
                status=MailStatus.SENT,
                sent_at=at,
                receipt=receipt,
                last_error=None,
            )

    async def mark_failed(
        self, message_id: UUID, at: datetime, error: str, *, retry_at: datetime | None
    ) -> None:
        item = self._items.get(message_id)
        if item is not None:
            self._items[message_id] = attrs.evolve(
                item,
                status=MailStatus.FAILED if retry_at is None else MailStatus.QUEUED,
                next_attempt_at=retry_at or at,
                last_error=error,
            )

    async def recent(self, *, limit: int) -> Sequence[QueuedMail]:
        newest = sorted(self._items.values(), key=lambda q: q.created_at, reverse=True)
        return newest[:limit]

    async def requeue_failed(self, at: datetime) -> int:
        failed = [q for q in self._items.values() if q.status is MailStatus.FAILED]
        for item in failed:
            self._items[item.message.id] = attrs.evolve(
                item, status=MailStatus.QUEUED, attempts=0, next_attempt_at=at
            )
        return len(failed)


# --- second factor and activity -------------------------------------------------


class InMemorySecondFactorRepository:
    def __init__(self) -> None:
        self._factors: dict[UUID, TotpFactor] = {}
        self._codes: dict[UUID, dict[str, datetime | None]] = {}
        self._challenges: dict[str, MfaChallenge] = {}

    def forget_user(self, user_id: UUID) -> None:
        self._factors.pop(user_id, None)
        self._codes.pop(user_id, None)
        for key in [k for k, c in self._challenges.items() if c.user_id == user_id]:
            del self._challenges[key]

    def checkpoint(self) -> Callable[[], None]:
        saved = copy.deepcopy((self._factors, self._codes, self._challenges))

        def restore() -> None:
            self._factors, self._codes, self._challenges = saved

        return restore

    async def get(self, user_id: UUID) -> TotpFactor | None:
        return self._factors.get(user_id)

    async def begin(self, factor: TotpFactor) -> bool:
        current = self._factors.get(factor.user_id)
        if current is not None and current.enabled:
            return False
        self._factors[factor.user_id] = factor
        self._codes.pop(factor.user_id, None)
        return True

    async def enable(
        self, user_id: UUID, at: datetime, *, step: int, recovery_code_hashes: Sequence[str]
    ) -> bool:
        current = self._factors.get(user_id)
        if current is None or current.enabled:
            return False
        self._factors[user_id] = attrs.evolve(current, enabled_at=at, last_step=step)
        self._codes[user_id] = dict.fromkeys(recovery_code_hashes)
        return True

    async def remove(self, user_id: UUID) -> bool:
        self._codes.pop(user_id, None)
        return self._factors.pop(user_id, None) is not None

    async def use_step(self, user_id: UUID, step: int) -> bool:
        current = self._factors.get(user_id)
        if current is None or (current.last_step is not None and current.last_step >= step):
            return False
        self._factors[user_id] = attrs.evolve(current, last_step=step)
        return True

    async def replace_recovery_codes(self, user_id: UUID, code_hashes: Sequence[str]) -> None:
        self._codes[user_id] = dict.fromkeys(code_hashes)

    async def use_recovery_code(self, user_id: UUID, code_hash: str, at: datetime) -> bool:
        codes = self._codes.get(user_id, {})
        if code_hash not in codes or codes[code_hash] is not None:
            return False
        codes[code_hash] = at
        return True

    async def unused_recovery_codes(self, user_id: UUID) -> int:
        return sum(used is None for used in self._codes.get(user_id, {}).values())

    async def add_challenge(self, challenge: MfaChallenge) -> None:
        self._challenges[challenge.token_hash] = challenge

    async def attempt_challenge(
        self, token_hash: str, at: datetime, *, max_attempts: int
    ) -> MfaChallenge | None:
        found = self._challenges.get(token_hash)
        if found is None or found.expires_at <= at or found.attempts >= max_attempts:
            return None
        self._challenges[token_hash] = attrs.evolve(found, attempts=found.attempts + 1)
        return found

    async def end_challenge(self, token_hash: str) -> bool:
        return self._challenges.pop(token_hash, None) is not None

    async def purge_challenges(self, before: datetime) -> int:
        expired = [k for k, c in self._challenges.items() if c.expires_at < before]
        for key in expired:
            del self._challenges[key]
        return len(expired)


class InMemoryActivityRepository:
    def __init__(self) -> None:
        self._entries: list[ActivityEntry] = []
        self._ids = itertools.count(1)

    def forget_user(self, user_id: UUID) -> None:
        self._entries = [e for e in self._entries if e.user_id != user_id]

    def checkpoint(self) -> Callable[[], None]:
        entries = list(self._entries)  # its items are immutable

        def restore() -> None:
            self._entries = entries

        return restore

    async def add(self, entry: ActivityEntry) -> None:
        self._entries.append(attrs.evolve(entry, id=next(self._ids)))

    async def page(self, query: ActivityQuery) -> Sequence[ActivityEntry]:
        def wanted(e: ActivityEntry) -> bool:
            return (
                (query.user_id is None or e.user_id == query.user_id)
                and (query.email is None or e.email == query.email)
                and (query.kind is None or e.kind == query.kind)
                and (query.since is None or e.at >= query.since)
                and (query.after is None or (e.at, e.id) < query.after)
            )

        found = sorted(filter(wanted, self._entries), key=lambda e: (e.at, e.id), reverse=True)
        return found[: query.limit]

    async def purge(self, before: datetime) -> int:
        kept = [e for e in self._entries if e.at >= before]
        purged = len(self._entries) - len(kept)
        self._entries = kept
        return purged


class FakeSecretBox:
    """Reversible and keyless: for tests only. Sealed text never equals the plaintext."""

    def seal(self, plaintext: str) -> str:
        return "sealed:" + plaintext.encode("utf-8").hex()

    def open(self, sealed: str) -> str:
        if not sealed.startswith("sealed:"):
            raise ValueError("this box cannot open that: it did not seal it")
        return bytes.fromhex(sealed.removeprefix("sealed:")).decode("utf-8")


class FakeOneTimePasswords:
    """Six-digit codes from a hash of secret and step: not RFC 6238, but as strict
    (one code per step, a different one for each secret)."""

    def new_secret(self) -> str:
        return secrets.token_hex(10).upper()

    def code(self, secret: str, step: int) -> str:
        digest = hashlib.sha256(f"{secret}:{step}".encode()).digest()
        return f"{int.from_bytes(digest[:4], 'big') % 1_000_000:06d}"

    def provisioning_uri(self, secret: str, *, account: str, issuer: str) -> str:
        return f"otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}"

    def qr_svg(self, text: str) -> str:
        return f'<svg xmlns="http://www.w3.org/2000/svg"><desc>{len(text)}</desc></svg>'


# --- API keys and the live stream ------------------------------------------------


class InMemoryApiKeyRepository:
    def __init__(self, users: InMemoryUserRepository | None = None) -> None:
        self._by_id: dict[UUID, ApiKey] = {}
        self._users = users
        # Told of each key revoked or deleted with its user.
        self.on_revoked: list[Callable[[ApiKey], None]] = []

    def forget_user(self, user_id: UUID) -> None:
        for key in [k for k in self._by_id.values() if k.user_id == user_id]:
            del self._by_id[key.id]
            if key.revoked_at is None:
                for observe in self.on_revoked:
                    observe(key)

    def checkpoint(self) -> Callable[[], None]:
        by_id = dict(self._by_id)  # its values are immutable

        def restore() -> None:
            self._by_id = by_id

        return restore

    async def add(self, key: ApiKey) -> None:
        self._by_id[key.id] = key

    async def get(self, key_id: UUID) -> ApiKey | None:
        return self._by_id.get(key_id)

    async def for_user(self, user_id: UUID) -> Sequence[ApiKey]:
        keys = [k for k in self._by_id.values() if k.user_id == user_id and k.revoked_at is None]
        return sorted(keys, key=lambda k: (-k.created_at.timestamp(), k.id))

    async def every_key(self) -> Sequence[OwnedApiKey]:
        owned = []
        for key in self._by_id.values():
            user = await self._users.get(key.user_id) if self._users is not None else None
            if key.revoked_at is None and user is not None:
                owned.append(OwnedApiKey(key=key, email=user.email.value))
        return sorted(
            owned,
            key=lambda o: (o.email.lower(), -o.key.created_at.timestamp(), o.key.id),
        )

    async def count_usable(self, user_id: UUID, at: datetime) -> int:
        return sum(1 for k in self._by_id.values() if k.user_id == user_id and k.is_usable(at))

    async def revoke(self, key_id: UUID, at: datetime) -> ApiKey | None:
        key = self._by_id.get(key_id)
        if key is None or key.revoked_at is not None:
            return None
        self._by_id[key_id] = revoked = attrs.evolve(key, revoked_at=at)
        for observe in self.on_revoked:
            observe(revoked)
        return revoked

    async def touch(self, key_id: UUID, at: datetime) -> None:
        key = self._by_id.get(key_id)
        if key is not None and (
            key.last_used_at is None or at - key.last_used_at >= LAST_USED_RESOLUTION
        ):
            self._by_id[key_id] = attrs.evolve(key, last_used_at=at)


class InMemoryMetricFeed:
    """The live stream's feed over the fakes: told by the repositories as they
    write (before a unit of work commits: the fakes have no commit to wait for)."""

    def __init__(
        self,
        metrics: InMemoryMetricRepository,
        sessions: InMemorySessionRepository,
        keys: InMemoryApiKeyRepository,
    ) -> None:
        self._metrics = metrics
        self._sessions = sessions
        self._keys = keys
        self._listeners: list[asyncio.Queue[Notice]] = []
        metrics.on_added.append(lambda m: self._tell(MetricsAdded(m.user_id, m.id, m.id, 1)))
        sessions.on_ended.append(
            lambda s: (
                self._tell(AccessEnded(GrantId("family", s.family_id)))
                if s.end_reason != "rotated"
                else None
            )
        )
        keys.on_revoked.append(lambda k: self._tell(AccessEnded(GrantId("key", k.id))))

    def _tell(self, notice: Notice) -> None:
        for queue in self._listeners:
            queue.put_nowait(notice)

    def lose_connection(self) -> None:
        """As if the listening connection dropped and came back: what it would have
        said meanwhile is lost, and it says ``Listening(resumed=True)``."""
        for queue in self._listeners:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(Listening(resumed=True))

    async def notices(self) -> AsyncIterator[Notice]:
        queue: asyncio.Queue[Notice] = asyncio.Queue()
        self._listeners.append(queue)
        try:
            yield Listening(resumed=False)
            while True:
                yield await queue.get()
        finally:
            self._listeners.remove(queue)

    def _rows(self, user_id: UUID) -> list[EngagementMetric]:
        return sorted(self._metrics._rows.get(user_id, []), key=lambda m: m.id)

    async def follow(self, user_id: UUID) -> None:
        return None  # told of every write anyway: telling costs nothing here

    async def unfollow(self, user_id: UUID) -> None:
        return None

    async def position(self, user_id: UUID) -> int:
        return max((m.id for rows in self._metrics._rows.values() for m in rows), default=0)

    async def metrics_after(
        self, user_id: UUID, after: int, *, through: int | None, limit: int
    ) -> Sequence[EngagementMetric]:
        rows = [
            m for m in self._rows(user_id) if m.id > after and (through is None or m.id <= through)
        ]
        return rows[:limit]

    async def count_after(self, user_id: UUID, after: int) -> tuple[int, int]:
        rows = [m for m in self._rows(user_id) if m.id > after]
        return len(rows), rows[-1].id if rows else after

    async def live_grants(self, grants: Collection[GrantId], at: datetime) -> set[GrantId]:
        live = set()
        for grant in grants:
            if grant.kind == "key":
                key = await self._keys.get(grant.id)
                if key is not None and key.is_usable(at):
                    live.add(grant)
            elif any(
                s.family_id == grant.id and s.is_live(at) for s in self._sessions._by_id.values()
            ):
                live.add(grant)
        return live
