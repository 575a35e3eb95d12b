"""In-memory repositories: the storage ports over dicts, with the database's
rules (unique emails, cascades on delete, keyset order)."""

from __future__ import annotations

import copy
import hmac
import itertools
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime
from types import MappingProxyType
from typing import Protocol, TypeVar
from uuid import UUID

import attrs

from engage_core.errors import Conflict, UnknownUser
from engage_core.inprocess import InMemoryRateLimiter, _seconds_from
from engage_core.model import (
    ActivityEntry,
    ApiKey,
    ApiKeyScope,
    DeviceSession,
    Email,
    EngagementMetric,
    MetricDraft,
    MetricType,
    MetricValue,
    MfaChallenge,
    OneTimeToken,
    OwnedApiKey,
    Session,
    Timestamp,
    TokenPurpose,
    TotpFactor,
    User,
)
from engage_core.ports import (
    LAST_USED_RESOLUTION,
    MAX_REPORTED_FAULTS,
    ActivityQuery,
    Clock,
    ExportedMetric,
    KeyRefused,
    LoadOutcome,
    RateCount,
    RateLimiter,
    Reservation,
    RowFault,
    SessionRefused,
    StagedMetric,
    StoredResponse,
)
from engage_core.queries import MetricPageQuery, Position, Series, SummaryQuery
from engage_core.summaries import Aggregate, in_query, summarize

_Work = TypeVar("_Work")

__all__ = [
    "InMemoryActivityRepository",
    "InMemoryApiKeyRepository",
    "InMemoryBulkMetricStore",
    "InMemoryIdempotencyStore",
    "InMemoryMetricRepository",
    "InMemoryOneTimeTokenRepository",
    "InMemorySecondFactorRepository",
    "InMemorySessionRepository",
    "InMemoryUserRepository",
    "link_cascade",
]


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

    def _holds(self, user_id: UUID) -> bool:
        return user_id in self._by_id

    async def get_by_email(self, canonical_email: str) -> User | None:
        user_id = self._by_email.get(canonical_email.lower())
        return await self.get(user_id) if user_id else None

    async def set_password_hash(
        self, user_id: UUID, password_hash: str, at: datetime, *, replacing: str | None = None
    ) -> bool:
        user = self._by_id.get(user_id)
        if user is None or (replacing is not None and user.password_hash != replacing):
            return False
        user.password_hash = password_hash
        user.updated_at = at
        return True

    async def hold_password(self, user_id: UUID, password_hash: str) -> bool:
        user = self._by_id.get(user_id)
        return user is not None and user.password_hash == password_hash

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
    """Metrics by user. Once ``link_cascade`` has linked it to a user repository,
    metrics of a user it does not hold are refused with ``UnknownUser`` (a
    ``NotFound``), as the database's foreign key refuses them; on its own, it
    takes any user id."""

    def __init__(self) -> None:
        self._rows: dict[UUID, list[EngagementMetric]] = {}
        self._ids = itertools.count(1)
        # Told of each metric stored (the live stream's feed listens here).
        self.on_added: list[Callable[[EngagementMetric], None]] = []
        self._owners: InMemoryUserRepository | None = None  # set by link_cascade

    def _check_owner(self, user_id: UUID) -> None:
        if self._owners is not None and not self._owners._holds(user_id):
            raise UnknownUser("no such user")

    def forget_user(self, user_id: UUID) -> None:
        self._rows.pop(user_id, None)

    def checkpoint(self) -> Callable[[], None]:
        rows = copy.deepcopy(self._rows)

        def restore() -> None:
            self._rows = rows  # ids are not given back, as with a PostgreSQL sequence

        return restore

    async def add(self, user_id: UUID, draft: MetricDraft) -> EngagementMetric:
        self._check_owner(user_id)
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
        if drafts:  # as the database's: nothing to store asks nothing of the user
            self._check_owner(user_id)
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

    def stored(self) -> Mapping[UUID, Sequence[EngagementMetric]]:
        """Every user's metrics in the order they were added, read-only and not
        copied (for the bulk store and the feed)."""
        return MappingProxyType(self._rows)

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

    async def run_checked(
        self,
        session_id: UUID,
        user_id: UUID,
        at: datetime,
        work: Callable[[], Awaitable[_Work]],
    ) -> tuple[Session, _Work] | SessionRefused:
        # Eagerly: the check, then the work only for a live session.
        session = self._by_id.get(session_id)
        if session is None or session.user_id != user_id:
            return SessionRefused(ended=False)
        if not session.is_live(at):
            return SessionRefused(ended=True)
        return attrs.evolve(session), await work()

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

    async def end_family(self, family_id: UUID, at: datetime, reason: str) -> list[UUID]:
        return self._end_where(lambda s: s.family_id == family_id, at, reason)

    async def end_all_for_user(
        self, user_id: UUID, at: datetime, reason: str, *, keep_family: UUID | None = None
    ) -> list[UUID]:
        return self._end_where(
            lambda s: s.user_id == user_id and s.family_id != keep_family, at, reason
        )

    async def touch(self, session_id: UUID, at: datetime, *, unless_after: datetime) -> None:
        session = self._by_id.get(session_id)
        if session is not None and (
            session.last_seen_at is None or session.last_seen_at <= unless_after
        ):
            session.last_seen_at = at

    async def has_sessions(self, user_id: UUID) -> bool:
        return any(s.user_id == user_id for s in self._by_id.values())

    async def has_sessions_from(self, user_id: UUID, user_agent: str | None) -> bool:
        return any(
            s.user_id == user_id and s.client.user_agent == user_agent for s in self._by_id.values()
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
    keys) in the given fakes, as the database's ON DELETE CASCADE does; and make an
    ``InMemoryMetricRepository`` among them refuse metrics of a user that ``users``
    does not hold (``UnknownUser``), as the database's foreign key does."""
    users.on_delete.extend(store.forget_user for store in owned)
    for store in owned:
        if isinstance(store, InMemoryMetricRepository):
            store._owners = users


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
                committed=False,
                unknown_emails=tuple(unknown[:MAX_REPORTED_FAULTS]),
                unknown_email_rows=len(unknown),
            )
        # Equal to a metric stored before this load: rows equal to each other all go in.
        stored = self._metrics.stored()
        stored_before = {
            (owner, m.metric_type.value, m.recorded_at, m.metric_value.value)
            for owner in {o for o in owners.values() if o is not None}
            for m in stored.get(owner, [])
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
        for owner, metrics in list(self._metrics.stored().items()):
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


class InMemorySecondFactorRepository:
    def __init__(self) -> None:
        self._factors: dict[UUID, TotpFactor] = {}
        self._codes: dict[UUID, dict[str, datetime | None]] = {}
        self._challenges: dict[str, MfaChallenge] = {}

    def forget_user(self, user_id: UUID) -> None:
        self._factors.pop(user_id, None)
        self._codes.pop(user_id, None)
        self._drop_challenges(lambda c: c.user_id == user_id)

    def _drop_challenges(self, which: Callable[[MfaChallenge], bool]) -> int:
        keys = [k for k, c in self._challenges.items() if which(c)]
        for key in keys:
            del self._challenges[key]
        return len(keys)

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

    async def end_challenges_of(self, user_id: UUID) -> int:
        return self._drop_challenges(lambda c: c.user_id == user_id)

    async def purge_challenges(self, before: datetime) -> int:
        return self._drop_challenges(lambda c: c.expires_at < before)


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


class InMemoryApiKeyRepository:
    def __init__(
        self, users: InMemoryUserRepository | None = None, limits: RateLimiter | None = None
    ) -> None:
        self._by_id: dict[UUID, ApiKey] = {}
        self._users = users
        # Where ``run_checked`` counts uses: this store's rate limits.
        self.limits: RateLimiter = limits if limits is not None else InMemoryRateLimiter()
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

    async def run_checked(
        self,
        key_id: UUID,
        user_id: UUID,
        secret_hash: str,
        scope: ApiKeyScope,
        at: datetime,
        work: Callable[[], Awaitable[_Work]],
        *,
        count: RateCount | None = None,
    ) -> tuple[ApiKey, _Work] | KeyRefused:
        # Eagerly: the check, the count, then the work only for a key that passed.
        key = self._by_id.get(key_id)
        if (
            key is None
            or key.user_id != user_id
            or not hmac.compare_digest(key.secret_hash, secret_hash)
        ):
            return KeyRefused("unknown")
        if key.revoked_at is not None:
            return KeyRefused("revoked")
        if not key.is_usable(at):
            return KeyRefused("expired")
        if scope not in key.scopes:
            return KeyRefused("scope")
        if count is not None:
            decision = await self.limits.hit(count.key, limit=count.limit, window=count.window)
            if not decision.allowed:
                return KeyRefused("rate", decision.retry_after)
        return key, await work()
