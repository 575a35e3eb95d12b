"""The ports: what the use cases need from the outside world.

Adapters conform structurally (``typing.Protocol``); mypy checks it. Every
port that may touch I/O is async. The in-memory fakes in
``engage_core.testing`` implement each one and pass the same contract
tests as the real adapters.
"""

from __future__ import annotations

import enum
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Generic, Literal, NamedTuple, Protocol, TypeVar
from uuid import UUID, uuid4

from attrs import field, frozen

from engage_core.model import (
    ActivityEntry,
    ActivityKind,
    ApiKey,
    ApiKeyScope,
    DeviceSession,
    Email,
    EngagementMetric,
    GrantId,
    MetricDraft,
    MfaChallenge,
    OneTimeToken,
    OwnedApiKey,
    Password,
    Session,
    TokenPurpose,
    TotpFactor,
    User,
)
from engage_core.queries import MetricPageQuery, Series, SummaryQuery

_Read = TypeVar("_Read")
_Work = TypeVar("_Work")

__all__ = [
    "LAST_USED_RESOLUTION",
    "MAX_REPORTED_FAULTS",
    "AccessClaims",
    "AccessEnded",
    "ActivityQuery",
    "ActivityRepository",
    "ApiKeyRepository",
    "BulkMetricStore",
    "Cache",
    "Clock",
    "DashboardCodec",
    "DashboardEntry",
    "ExportedMetric",
    "IdempotencyStore",
    "KeyRefused",
    "Listening",
    "LoadOutcome",
    "MailMessage",
    "MailNotSent",
    "MailQueue",
    "MailStatus",
    "Mailer",
    "MetricFeed",
    "MetricRepository",
    "MetricsAdded",
    "Notice",
    "OneTimePasswords",
    "OneTimeTokenRepository",
    "PasswordHasher",
    "QueuedMail",
    "RateCount",
    "RateDecision",
    "RateLimiter",
    "Reservation",
    "RowFault",
    "SecondFactorRepository",
    "SecretBox",
    "SessionRefused",
    "SessionRepository",
    "StagedMetric",
    "StoredResponse",
    "TokenIssuer",
    "UnitOfWork",
    "UserRepository",
]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, timezone-aware (UTC)."""
        ...


class UnitOfWork(Protocol):
    """Steps that commit together or not at all::

        async with uow.atomic():
            await users.set_password_hash(...)
            await sessions.end_all_for_user(...)

    The repositories take part in the unit in progress of the task calling them;
    outside one, each operation commits by itself. A block inside another joins
    it: nothing commits before the outermost block does. An error leaving a
    block undoes what that block wrote (all of it, unless caught outside); to
    carry on after a step that may fail, give that step a block of its own.
    """

    def atomic(self) -> AbstractAsyncContextManager[None]: ...

    async def after_commit(self, action: Callable[[], Awaitable[object]]) -> None:
        """Run ``action`` once the unit in progress commits, never if it rolls back;
        at once outside a unit. For effects outside the database (the cache)."""
        ...


class UserRepository(Protocol):
    async def add(self, user: User) -> None:
        """Store a new user; raise ``Conflict`` when the email is taken (any case)."""
        ...

    async def get(self, user_id: UUID) -> User | None: ...

    async def get_by_email(self, canonical_email: str) -> User | None:
        """Look up by ``Email.canonical`` (case-insensitive)."""
        ...

    async def set_password_hash(
        self, user_id: UUID, password_hash: str, at: datetime, *, replacing: str | None = None
    ) -> bool:
        """Store the new hash; True when stored. With ``replacing``, only while the stored
        hash is still that one (in one step: of two changes from the same password, one
        wins, also when they run at once)."""
        ...

    async def hold_password(self, user_id: UUID, password_hash: str) -> bool:
        """Whether ``password_hash`` is still the user's; inside a unit of work it
        stays so until the unit ends (a concurrent change of it waits), so that a
        session started there on a password just checked is never one that a
        password change or reset, ending every session, did not see."""
        ...

    async def delete(self, user_id: UUID) -> bool:
        """Delete the user and, by cascade, their sessions and metrics."""
        ...

    async def list(self, *, after_email: str | None = None, limit: int = 100) -> Sequence[User]:
        """Users ordered by canonical email, those after ``after_email`` first."""
        ...

    async def mark_email_verified(self, user_id: UUID, email: Email, at: datetime) -> bool:
        """Record that ``email`` is verified, only if it is still the user's address."""
        ...

    async def change_email(self, user_id: UUID, email: Email, at: datetime) -> bool:
        """Give the user this (verified) address; ``Conflict`` when another account
        has it (any case). False when the user is gone."""
        ...


class MetricRepository(Protocol):
    """Metrics by user. A repository beside a store of users (a foreign key, a
    linked fake) refuses metrics of a user who does not exist with ``UnknownUser``
    (a ``NotFound``); one that keeps no users takes any id."""

    async def add(self, user_id: UUID, draft: MetricDraft) -> EngagementMetric: ...

    async def add_many(self, user_id: UUID, drafts: Sequence[MetricDraft]) -> int:
        """Store all the drafts in one transaction, or none of them."""
        ...

    async def page(self, user_id: UUID, query: MetricPageQuery) -> Sequence[EngagementMetric]:
        """Up to ``query.limit`` metrics, newest first (``recorded_at``, then ``id``),
        strictly after ``query.after`` in that order when given."""
        ...

    async def summarize(self, user_id: UUID, query: SummaryQuery) -> Sequence[Series]:
        """Per-type series of non-empty buckets, as ``engage_core.summaries.summarize`` defines."""
        ...


@frozen
class SessionRefused:
    """Why ``SessionRepository.run_checked`` refused: ``ended`` when the session is
    the user's but ended or expired (final), else there is no such session of theirs."""

    ended: bool


class SessionRepository(Protocol):
    async def add(self, session: Session) -> None: ...

    async def get(self, session_id: UUID) -> Session | None: ...

    async def run_checked(
        self,
        session_id: UUID,
        user_id: UUID,
        at: datetime,
        work: Callable[[], Awaitable[_Work]],
    ) -> tuple[Session, _Work] | SessionRefused:
        """Run ``work`` with the check that ``session_id`` is ``user_id``'s and live at
        ``at`` (``Session.is_live``): the session as stored and the work's result, or
        why not. The check may travel with the work's statements (one round trip
        where the store can); so when it refuses, nothing the work read is returned
        and nothing it wrote is kept, and whatever the work raised is dropped. When
        the session is live, whatever the work raises is raised."""
        ...

    async def find_by_token_hash(self, token_hash: str) -> Session | None: ...

    async def rotate(self, old_id: UUID, new: Session, at: datetime) -> bool:
        """End ``old_id`` as ``rotated`` and add ``new``, atomically, only if
        ``old_id`` is still live at ``at``. False (and no change) otherwise."""
        ...

    async def end_family(self, family_id: UUID, at: datetime, reason: str) -> list[UUID]:
        """End every live session of a family; return their ids."""
        ...

    async def end_all_for_user(
        self, user_id: UUID, at: datetime, reason: str, *, keep_family: UUID | None = None
    ) -> list[UUID]:
        """End every live session of a user, but those of ``keep_family``; return their ids."""
        ...

    async def touch(self, session_id: UUID, at: datetime, *, unless_after: datetime) -> None:
        """Set ``last_seen_at`` to ``at`` unless it is already after ``unless_after``
        (so concurrent requests write it once)."""
        ...

    async def live_devices(self, user_id: UUID, at: datetime) -> list[DeviceSession]:
        """The user's live session families, the newest sign-in first."""
        ...

    async def has_sessions(self, user_id: UUID) -> bool:
        """Whether the user ever had a session (live or ended)."""
        ...

    async def has_sessions_from(self, user_id: UUID, user_agent: str | None) -> bool:
        """Whether the user ever had a session (live or ended) from this user agent;
        ``None`` asks about the clients that sent none."""
        ...


class PasswordHasher(Protocol):
    async def hash(self, password: Password) -> str:
        """A salted, slow hash. CPU-heavy: runs off the event loop."""
        ...

    async def verify(self, password: Password, password_hash: str) -> bool:
        """True when ``password`` matches; False for a wrong password or an unreadable hash."""
        ...

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with older settings and should be replaced."""
        ...


@frozen(kw_only=True)
class AccessClaims:
    user_id: UUID
    session_id: UUID
    issued_at: datetime
    expires_at: datetime


class TokenIssuer(Protocol):
    async def issue(self, claims: AccessClaims) -> str: ...

    async def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; ``Unauthorized`` for anything else."""
        ...


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool:
        """Store ``value`` for ``ttl`` seconds; with ``only_if_absent``, only when
        ``key`` holds nothing. True when stored."""
        ...

    async def delete(self, *keys: str) -> None: ...


@frozen
class DashboardEntry(Generic[_Read]):
    """A dashboard read as cached: whose it is, the query it answers (in the words
    of ``DashboardCache``) and what the read returned."""

    user_id: UUID
    query: str
    data: _Read


class DashboardCodec(Protocol):
    """Dashboard entries as the bytes a ``Cache`` holds, and back. Decoding answers
    None for bytes that hold no such entry: a cache may hold anything."""

    def encode_page(self, entry: DashboardEntry[Sequence[EngagementMetric]]) -> bytes: ...

    def decode_page(self, raw: bytes) -> DashboardEntry[Sequence[EngagementMetric]] | None: ...

    def encode_summary(self, entry: DashboardEntry[Sequence[Series]]) -> bytes: ...

    def decode_summary(self, raw: bytes) -> DashboardEntry[Sequence[Series]] | None: ...


@frozen
class RateDecision:
    allowed: bool
    remaining: int
    retry_after: float


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window: float) -> RateDecision:
        """Count one event under ``key`` if fewer than ``limit`` fell in the last
        ``window`` seconds; refused events are not counted."""
        ...

    async def peek(self, key: str, *, limit: int, window: float) -> RateDecision:
        """Whether one more event would be allowed, counting nothing."""
        ...

    async def reset(self, key: str) -> None: ...


class SecondFactorRepository(Protocol):
    """TOTP set-ups, recovery codes (hashes only) and pending login challenges."""

    async def get(self, user_id: UUID) -> TotpFactor | None: ...

    async def begin(self, factor: TotpFactor) -> bool:
        """Store a set-up that is not on yet, replacing one not confirmed; False
        (and no change) when the user's second factor is on."""
        ...

    async def enable(
        self, user_id: UUID, at: datetime, *, step: int, recovery_code_hashes: Sequence[str]
    ) -> bool:
        """Turn a pending set-up on, with ``step`` used and these recovery codes;
        False when there is none pending."""
        ...

    async def remove(self, user_id: UUID) -> bool:
        """Delete the set-up and its recovery codes; False when there was none."""
        ...

    async def use_step(self, user_id: UUID, step: int) -> bool:
        """Record ``step`` as used, only if it is newer than the last one used: of
        two concurrent uses of one code, exactly one succeeds."""
        ...

    async def replace_recovery_codes(self, user_id: UUID, code_hashes: Sequence[str]) -> None: ...

    async def use_recovery_code(self, user_id: UUID, code_hash: str, at: datetime) -> bool:
        """Spend one unused recovery code; False when there is no such unused code."""
        ...

    async def unused_recovery_codes(self, user_id: UUID) -> int: ...

    async def add_challenge(self, challenge: MfaChallenge) -> None: ...

    async def attempt_challenge(
        self, token_hash: str, at: datetime, *, max_attempts: int
    ) -> MfaChallenge | None:
        """Count one attempt on a live challenge that has attempts left and return it
        (as it was before this attempt); None otherwise."""
        ...

    async def end_challenge(self, token_hash: str) -> bool:
        """Delete a challenge once used; of two concurrent callers only one gets True."""
        ...

    async def end_challenges_of(self, user_id: UUID) -> int:
        """Delete every challenge of the user (the password they were opened on has
        changed); how many."""
        ...

    async def purge_challenges(self, before: datetime) -> int:
        """Delete the challenges that expired before ``before``; how many."""
        ...


@frozen(kw_only=True)
class ActivityQuery:
    """Activity, newest first (``at``, then ``id``), strictly after ``after`` when given."""

    user_id: UUID | None = None
    email: str | None = None  # canonical
    kind: ActivityKind | None = None
    since: datetime | None = None
    limit: int = 50
    after: tuple[datetime, int] | None = None


class ActivityRepository(Protocol):
    """Append-only: entries are added and, past their retention, purged; never changed."""

    async def add(self, entry: ActivityEntry) -> None: ...

    async def page(self, query: ActivityQuery) -> Sequence[ActivityEntry]: ...

    async def purge(self, before: datetime) -> int:
        """Delete the entries recorded before ``before``; how many."""
        ...


class SecretBox(Protocol):
    """Encryption at rest for secrets the service must read back (TOTP secrets)."""

    def seal(self, plaintext: str) -> str: ...

    def open(self, sealed: str) -> str:
        """The plaintext; ``ValueError`` when no key opens it."""
        ...


class OneTimePasswords(Protocol):
    """RFC 6238 codes: 6 digits per 30-second step of a base32 secret."""

    def new_secret(self) -> str: ...

    def code(self, secret: str, step: int) -> str: ...

    def provisioning_uri(self, secret: str, *, account: str, issuer: str) -> str: ...

    def qr_svg(self, text: str) -> str:
        """A QR code of ``text``, as an SVG document."""
        ...


@frozen
class StoredResponse:
    """The first answer to an idempotent request, replayed on repeats."""

    status: int
    body: bytes


@frozen
class Reservation:
    """What ``IdempotencyStore.reserve`` found under a key."""

    first: bool  # nothing: the key is now reserved for this request
    fingerprint: str = ""  # otherwise, the fingerprint of the request holding the key
    response: StoredResponse | None = None  # and its answer, once it has one


class IdempotencyStore(Protocol):
    """First responses to idempotent requests, per owner (user) and key."""

    async def reserve(
        self, owner: UUID, key: str, fingerprint: str, *, lease: float
    ) -> Reservation:
        """Claim ``key`` for a new request for ``lease`` seconds, or report the
        request that holds it. A lease that ran out (its process died) frees the key."""
        ...

    async def complete(
        self, owner: UUID, key: str, response: StoredResponse, *, ttl: float
    ) -> None:
        """Store the response of the request that reserved ``key``, kept ``ttl`` seconds."""
        ...

    async def release(self, owner: UUID, key: str) -> None:
        """Give up a reservation whose request failed, so a retry can run.
        A completed key is kept."""
        ...


# --- email ---------------------------------------------------------------------


@frozen(kw_only=True)
class MailMessage:
    """One email to one address, in plain text and in HTML.

    ``id`` stays the same however often delivery is tried, so every attempt
    carries the same Message-ID. ``link`` is the action the message asks for
    (verify, reset...), if any: the outbox logs it.
    """

    to: Email
    subject: str
    text: str = field(repr=False)
    html: str = field(repr=False)
    link: str | None = field(default=None, repr=False)
    id: UUID = field(factory=uuid4)


class MailNotSent(Exception):
    """The mail was not handed over. ``permanent`` when trying again cannot help
    (the server refused the recipient or the message); otherwise retry later."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Mailer(Protocol):
    async def send(self, message: MailMessage) -> str:
        """Hand ``message`` over for delivery and return a receipt for the record
        (the server's reply, the file written); ``MailNotSent`` when it was not taken."""
        ...


class MailStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for its first or next attempt
    SENT = "sent"
    FAILED = "failed"  # given up: no more attempts until retried by hand


@frozen(kw_only=True)
class QueuedMail:
    """A message in the outbox and how its delivery went."""

    message: MailMessage
    status: MailStatus
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    last_error: str | None = None
    receipt: str | None = None


class MailQueue(Protocol):
    """The outbox: messages queued with the change that caused them (inside its
    unit of work), delivered later by whoever claims them."""

    async def enqueue(self, message: MailMessage, at: datetime) -> None:
        """Queue ``message``, due at once; it commits with the unit in progress."""
        ...

    async def claim(self, at: datetime, *, limit: int, lease: timedelta) -> Sequence[QueuedMail]:
        """Up to ``limit`` queued messages due at ``at``, oldest first, each counted
        as one more attempt and hidden from other claims for ``lease``: two
        claimers (processes) never get the same message."""
        ...

    async def mark_sent(self, message_id: UUID, at: datetime, receipt: str) -> None:
        """Record the delivery; the stored bodies (and their links) are dropped."""
        ...

    async def mark_failed(
        self, message_id: UUID, at: datetime, error: str, *, retry_at: datetime | None
    ) -> None:
        """Record a failed attempt: due again at ``retry_at``, or ``failed`` for good."""
        ...

    async def recent(self, *, limit: int) -> Sequence[QueuedMail]:
        """Messages in any state, newest first."""
        ...

    async def requeue_failed(self, at: datetime) -> int:
        """Make every failed message due again at ``at`` with its attempts reset; how many."""
        ...

    async def drop_unsent(self, recipient: str) -> int:
        """Delete the messages to ``recipient`` not sent (queued or failed); how many."""
        ...


class OneTimeTokenRepository(Protocol):
    async def add(self, token: OneTimeToken) -> None: ...

    async def find(
        self, token_hash: str, purpose: TokenPurpose, at: datetime
    ) -> OneTimeToken | None:
        """The token if it is usable at ``at``, without using it."""
        ...

    async def use(
        self, token_hash: str, purpose: TokenPurpose, at: datetime
    ) -> OneTimeToken | None:
        """Mark the token used if it is usable at ``at``, in one step: of two
        concurrent uses exactly one gets the token, the other ``None``."""
        ...

    async def revoke(self, user_id: UUID, purposes: Collection[TokenPurpose], at: datetime) -> int:
        """Use up every usable token of the user for these purposes; how many."""
        ...


# --- bulk loads and exports (the operator's backfill) -----------------------------


@frozen
class RowFault:
    """Why the row ending at ``line`` of a backfill's input was refused."""

    line: int
    message: str


class StagedMetric(NamedTuple):
    """A valid backfill row on its way to the store; the store maps the email to its user.

    A named tuple, not an attrs class: a backfill makes one per row, and this is
    the cheapest immutable record to build.
    """

    line: int
    email: str  # Email.canonical
    metric_type: str
    metric_value: Decimal
    recorded_at: datetime


MAX_REPORTED_FAULTS = 20  # faults a backfill reports (bad rows, unknown emails), by line


@frozen
class LoadOutcome:
    committed: bool
    inserted: int = 0
    skipped: int = 0
    unknown_emails: tuple[RowFault, ...] = ()  # the first MAX_REPORTED_FAULTS, by line
    unknown_email_rows: int = 0


@frozen
class ExportedMetric:
    email: str
    metric_type: str
    metric_value: Decimal
    recorded_at: datetime


class BulkMetricStore(Protocol):
    async def load(
        self, rows: Iterable[StagedMetric], *, commit: Callable[[], bool]
    ) -> LoadOutcome:
        """In one transaction: take every row, find those whose email is no user's,
        and insert each row not equal to a metric stored before this load (same
        user, type, time and value; rows equal to each other within the load all
        go in). Commit only if every email is a user's and ``commit()``, asked
        after the last row, says so; otherwise store nothing.
        """
        ...

    def export(
        self, *, user_id: UUID | None, since: datetime | None, until: datetime | None
    ) -> AsyncGenerator[ExportedMetric, None]:
        """Every matching metric with its user's email, oldest first, streamed."""
        ...


# --- API keys ----------------------------------------------------------------------

# last_used_at is written at most this often per key: a use is a read, not a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@frozen
class RateCount:
    """One use to count against a limit, as ``RateLimiter.hit(key, limit=, window=)``
    counts it: at most ``limit`` in any ``window`` seconds."""

    key: str
    limit: int
    window: float


@frozen
class KeyRefused:
    """Why ``ApiKeyRepository.run_checked`` refused, the first that applies in this
    order: ``unknown`` (no such key of that user, or another secret's hash), ``revoked``,
    ``expired``, ``scope`` (the key lacks it), ``rate`` (one more use would pass the
    limit; allowed again in ``retry_after`` seconds)."""

    reason: Literal["unknown", "revoked", "expired", "scope", "rate"]
    retry_after: float = 0.0


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKey) -> None: ...

    async def get(self, key_id: UUID) -> ApiKey | None:
        """The key, revoked or expired too; None when there is no such key."""
        ...

    async def for_user(self, user_id: UUID) -> Sequence[ApiKey]:
        """The user's keys that are not revoked (expired ones too), newest first."""
        ...

    async def every_key(self) -> Sequence[OwnedApiKey]:
        """Every key that is not revoked, by user email, then newest first."""
        ...

    async def count_usable(self, user_id: UUID, at: datetime) -> int:
        """How many of the user's keys are usable at ``at``: neither revoked nor expired."""
        ...

    async def revoke(self, key_id: UUID, at: datetime) -> ApiKey | None:
        """Revoke the key if it is not revoked yet: the key, now revoked, or None."""
        ...

    async def touch(self, key_id: UUID, at: datetime) -> None:
        """Set ``last_used_at`` to ``at`` unless it is less than ``LAST_USED_RESOLUTION``
        before ``at`` (so concurrent uses write it once)."""
        ...

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
        """Run ``work`` with the check that ``key_id`` is ``user_id``'s, stored with
        ``secret_hash``, neither revoked nor expired at ``at`` (``ApiKey.is_usable``) and holds
        ``scope``; with ``count``, the use is then counted in the limits this
        store's ``RateLimiter`` keeps (the same keys), and only then: a key refused
        for any other reason is not counted. The key as stored (before this use)
        and the work's result, or why not (``KeyRefused``). As with
        ``SessionRepository.run_checked``, the check may travel with the work's
        statements: when it refuses, nothing the work read is returned, nothing it
        wrote is kept, and whatever it raised is dropped; when the key passes,
        whatever the work raises is raised (and the use counted all the same)."""
        ...


# --- the live stream's feed ------------------------------------------------------------


@frozen
class MetricsAdded:
    """One statement stored ``count`` metrics of a user, ids ``first_id`` to ``last_id``."""

    user_id: UUID
    first_id: int
    last_id: int
    count: int


@frozen
class AccessEnded:
    """A signed-in device's session (its family) or an API key may no longer be used."""

    grant: GrantId


@frozen
class Listening:
    """The feed listens (again). ``resumed``: after a lost connection, so anything
    it would have said meanwhile is unknown."""

    resumed: bool


Notice = MetricsAdded | AccessEnded | Listening


class MetricFeed(Protocol):
    """What the live stream learns of new metrics and ended access, and reads back."""

    def notices(self) -> AsyncIterator[Notice]:
        """Notices in commit order, for as long as the caller iterates; ``Listening``
        first, and again after a lost connection is back."""
        ...

    async def follow(self, user_id: UUID) -> int:
        """Say that this process has one more stream of the user: the feed tells of
        every new metric of the users followed (and may leave out the others':
        a notification costs their writer). Answers how many streams of the user
        are open now, this one included: in every process that follows the same
        storage (those whose listening connection is gone no longer count), or
        this process's own when the storage is only this process's. Two follows
        of one user answer different totals, whichever processes make them."""
        ...

    async def unfollow(self, user_id: UUID) -> None:
        """One stream of the user fewer (it no longer counts in ``follow``'s total)."""
        ...

    async def position(self, user_id: UUID) -> int:
        """An id that every metric of the user committed from now on will exceed,
        and that no metric committed before exceeds."""
        ...

    async def metrics_after(
        self, user_id: UUID, after: int, *, through: int | None, limit: int
    ) -> Sequence[EngagementMetric]:
        """The user's metrics with ids above ``after`` (up to ``through``), ascending."""
        ...

    async def count_after(self, user_id: UUID, after: int) -> tuple[int, int]:
        """How many of the user's metrics have ids above ``after``, and the last one's
        id (``after`` when there is none)."""
        ...

    async def live_grants(self, grants: Collection[GrantId], at: datetime) -> set[GrantId]:
        """Those of ``grants`` that may still be used at ``at``."""
        ...
