"""The one composition root, and the one door into the adapters.

Settings in, a ready object graph out: HTTP, the CLI and the tests build their
services here (``build_services``), so there is exactly one place that decides
which adapter stands behind each port. HTTP and the CLI import no other adapter
module but ``settings`` (import-linter holds them to it); what they need of the
adapters is here, typed:

- ``Services``: the use cases, the readiness probes, the purges of ``engage
  serve``'s schedule, and ``Observability`` (what Prometheus reads);
- ``HttpPolicy`` (``http_policy``): what the HTTP layer needs from settings;
- ``Database``: the schema, connection budget, backups and restores the CLI
  works on, with the archive and restore-drill functions beside it;
- the adapter errors an entry point reports (``OPERATOR_ERRORS``,
  ``UNAVAILABLE_ERRORS`` and ``unavailable_from``, ``UNKNOWN_USER_ERRORS`` and
  ``unknown_user_from``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import (
    AbstractContextManager,
    AsyncExitStack,
    asynccontextmanager,
    nullcontext,
    suppress,
)
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Literal

import attrs
from attrs import define, frozen

from engage_adapters.bcrypt_hasher import BcryptPasswordHasher
from engage_adapters.clock import SystemClock
from engage_adapters.closing import close_within, stop_task
from engage_adapters.dashboard_codec import JsonDashboardCodec
from engage_adapters.embedded_pg import EmbeddedPostgresError, kept_running, start_embedded
from engage_adapters.jwt_tokens import JwtTokenIssuer
from engage_adapters.mail.outbox import OUTBOX_DIR, OutboxMailer
from engage_adapters.mail.sender import MailSender
from engage_adapters.mail.smtp import SmtpMailer, SmtpServer
from engage_adapters.postgres import migrate
from engage_adapters.postgres.activity import PostgresActivityRepository
from engage_adapters.postgres.api_keys import PostgresApiKeyRepository
from engage_adapters.postgres.backup import (
    ArchiveContents,
    BackupError,
    PgTools,
    RestoredTable,
    describe_target,
    find_tools,
    newest_backup,
    prune_backups,
    require_engage_archive,
    restore_backup,
    write_backup,
)
from engage_adapters.postgres.bulk import PostgresBulkMetricStore
from engage_adapters.postgres.drill import DrillReport, verify_backup
from engage_adapters.postgres.idempotency import PostgresIdempotencyStore
from engage_adapters.postgres.live import PostgresMetricFeed
from engage_adapters.postgres.mail_queue import PostgresMailQueue
from engage_adapters.postgres.metrics import PostgresMetricRepository
from engage_adapters.postgres.migrate import Migration, MigrationError, MigrationStatus
from engage_adapters.postgres.outage import UNAVAILABLE_ERRORS, GaveWay, unavailable_from
from engage_adapters.postgres.owners import UNKNOWN_USER_ERRORS, unknown_user_from
from engage_adapters.postgres.pool import (
    ANSWER_WITHIN,
    DEFAULT_POOL_SIZE,
    HEADROOM,
    connection_budget,
    open_pool,
    ping,
    pool_size_per_worker,
)
from engage_adapters.postgres.rate_limits import PostgresRateLimiter
from engage_adapters.postgres.second_factor import PostgresSecondFactorRepository
from engage_adapters.postgres.sessions import PostgresSessionRepository
from engage_adapters.postgres.tokens import PostgresOneTimeTokenRepository
from engage_adapters.postgres.transaction import PostgresUnitOfWork
from engage_adapters.postgres.users import PostgresUserRepository
from engage_adapters.redis_breaker import (
    FAILURES,
    BreakerState,
    CircuitBreaker,
    GuardedCache,
    GuardedRateLimiter,
    Unavailable,
)
from engage_adapters.redis_store import (
    RedisCache,
    RedisClient,
    RedisRateLimiter,
    drop_idle_connections,
    open_redis,
)
from engage_adapters.secret_box import FernetSecretBox
from engage_adapters.settings import (
    Network,
    Settings,
    resolve_encryption_keys,
    resolve_jwt_secret,
)
from engage_adapters.totp import PyotpOneTimePasswords
from engage_core import inprocess, testing
from engage_core.mail_templates import Branding
from engage_core.ports import (
    ActivityRepository,
    ApiKeyRepository,
    BulkMetricStore,
    Cache,
    Clock,
    IdempotencyStore,
    Mailer,
    MailQueue,
    MetricFeed,
    MetricRepository,
    OneTimeTokenRepository,
    PasswordHasher,
    RateLimiter,
    SecondFactorRepository,
    SessionRepository,
    TokenIssuer,
    UnitOfWork,
    UserRepository,
)
from engage_core.queries import CursorCodec
from engage_core.services.account_mail import AccountMail
from engage_core.services.activity import ActivityLog
from engage_core.services.admin import AccountAdmin
from engage_core.services.api_keys import ApiKeyPolicy, ApiKeyService
from engage_core.services.auth import AuthPolicy, AuthService
from engage_core.services.backfill import BackfillService
from engage_core.services.dashboard_cache import (
    CachedMetricRepository,
    DashboardCache,
    InvalidatingBulkStore,
)
from engage_core.services.email import EmailFlowPolicy, EmailFlows
from engage_core.services.idempotency import IdempotencyGuard
from engage_core.services.live import LiveMetrics
from engage_core.services.mail_delivery import DeliveryPolicy, MailDelivery
from engage_core.services.metrics import MetricsService
from engage_core.services.mfa import MfaService, TotpVerifier

__all__ = [
    "ANSWER_WITHIN",
    "HEADROOM",
    "OPERATOR_ERRORS",
    "UNAVAILABLE_ERRORS",
    "UNKNOWN_USER_ERRORS",
    "Database",
    "Degraded",
    "DrillReport",
    "GaveWay",
    "HttpPolicy",
    "Observability",
    "PgTools",
    "Readiness",
    "Services",
    "SharedCacheUnreachable",
    "Storage",
    "build_services",
    "database_url",
    "derive_key",
    "find_tools",
    "forget_shared_cache",
    "http_policy",
    "newest_backup",
    "pool_size_per_worker",
    "prune_backups",
    "require_engage_archive",
    "stop_task",
    "unavailable_from",
    "unknown_user_from",
    "verify_backup",
]

Storage = Literal["postgres", "memory"]
Probe = Callable[[], Awaitable[object]]
Purge = Callable[[], Awaitable[int]]
PROBE_TIMEOUT = 2.0
# How long a "session is live" answer is trusted when every process shares the
# cache: ending a session overwrites it at once, so this only bounds how long a
# Redis that lost a write (an outage) could vouch for an ended session.
SHARED_LIVE_SESSION_TTL = 30.0
APP_NAME = "engage-suite"
# Where links in mails point when ENGAGE_PUBLIC_URL is unset: `engage serve`'s default.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
# Adapter failures whose message is the whole story for an operator (one line).
OPERATOR_ERRORS: tuple[type[Exception], ...] = (MigrationError, EmbeddedPostgresError, BackupError)


@frozen(kw_only=True)
class HttpPolicy:
    """What the HTTP layer needs from settings, decided once at start."""

    cookie_secure: bool
    cors_origins: tuple[str, ...]
    auth_rate_per_minute: int
    csrf_secret: str
    # Proxies whose X-Forwarded-For is believed (ENGAGE_TRUSTED_PROXIES).
    trusted_proxies: tuple[Network, ...] = ()
    # Serve the web app's pages (ENGAGE_WEB).
    web: bool = True


def http_policy(settings: Settings, *, bind_host: str) -> HttpPolicy:
    """The HTTP policy of ``settings`` for a server bound to ``bind_host`` (it
    decides whether cookies are Secure when ENGAGE_COOKIE_SECURE is unset)."""
    return HttpPolicy(
        cookie_secure=settings.cookies_secure_for(bind_host),
        cors_origins=settings.cors_origins,
        auth_rate_per_minute=settings.auth_rate_per_minute,
        csrf_secret=derive_key(resolve_jwt_secret(settings), "csrf").hex(),
        trusted_proxies=settings.trusted_proxies,
        web=settings.web,
    )


@frozen
class Degraded:
    """What a probe returns for a dependency that is down but not needed to
    serve (a cache): reported as "degraded: <detail>", ready all the same."""

    detail: str


@frozen
class Readiness:
    ready: bool
    checks: dict[str, str]


@frozen(kw_only=True)
class Observability:
    """What Prometheus reads of the running services (the core and the adapters
    call observers and know nothing of Prometheus)."""

    # Circuit breakers by dependency: Redis's, when Redis is configured.
    breakers: Mapping[str, CircuitBreaker] = attrs.field(factory=dict)
    # The dashboard cache when dashboards are cached (its observers see hits and misses).
    dashboards: DashboardCache | None = None
    # The database pool's figures (pool_size, pool_available, requests_waiting), with a pool.
    pool_stats: Callable[[], dict[str, int]] | None = None


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
    activity: ActivityLog
    mfa: MfaService
    api_keys: ApiKeyService
    # This process's live streams (started by the first one, stopped on exit).
    live: LiveMetrics
    # Email: the flows of contract §7, the outbox's delivery, and the task that
    # runs it (``engage serve`` starts it; CLI commands only queue).
    email: EmailFlows
    mail: MailDelivery
    mail_sender: MailSender
    probes: dict[str, Probe] = attrs.field(factory=dict)
    # What the schedule in `engage serve` deletes once it has expired, by name.
    purges: dict[str, Purge] = attrs.field(factory=dict)
    observability: Observability = attrs.field(factory=Observability)

    async def purge_expired(self) -> dict[str, int]:
        """Delete what has outlived its keeping (activity, challenges, limits,
        idempotency keys); how much."""
        return {name: await purge() for name, purge in self.purges.items()}

    async def readiness(self) -> Readiness:
        """Ready when every dependency is "ok" or merely degraded (a cache that
        is down costs speed, not correctness); each one's state in ``checks``."""
        states = {}
        ready = True
        for name, probe in self.probes.items():
            try:
                answer = await asyncio.wait_for(probe(), timeout=PROBE_TIMEOUT)
            except TimeoutError:
                states[name], ready = "timeout", False
            except Exception as exc:  # a probe reports; it does not fail the caller
                states[name], ready = f"error: {type(exc).__name__}", False
            else:
                states[name] = (
                    f"degraded: {answer.detail}" if isinstance(answer, Degraded) else "ok"
                )
        return Readiness(ready=ready, checks=states)


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
    mailer: Mailer | None = None,
    upgrade: bool = False,
    answer_within: float | None = None,
) -> AsyncIterator[Services]:
    """Build the services for ``settings`` and close what they opened on exit.

    ``storage="postgres"`` uses ``ENGAGE_DATABASE_URL``, or the embedded
    server under the data directory when it is unset; the schema must be
    current (``engage db upgrade``), unless ``upgrade`` applies pending
    migrations first (as ``engage serve`` and the CLI do); with ``answer_within``
    (what ``engage serve``'s workers pass), a statement the database leaves
    unanswered that long fails as an unreachable database does, where the CLI's
    long loads wait. ``storage="memory"`` keeps everything in
    this process (tests, demos). ``clock``, ``hasher`` and ``tokens`` may be
    swapped for tests.

    With ``ENGAGE_REDIS_URL``, the cache and the rate limits are Redis's, shared
    by every process, behind a circuit breaker that falls back to PostgreSQL
    and in-process limits while Redis is unusable; "live" session answers and
    dashboards are then cached too. Without it, the cache stays in this process
    and every rate limit is counted in PostgreSQL (in this process with
    ``storage="memory"``).
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
    async with AsyncExitStack() as stack:
        shared = _shared_state(settings, stack)
        if storage == "postgres":
            stored = await _postgres_storage(
                settings, stack, upgrade=upgrade, answer_within=answer_within
            )
        else:
            stored = _memory_storage()
        kept = _caching(stored, shared)
        cache, limiter = kept.cache, kept.limiter
        probes, purges = dict(stored.probes), dict(stored.purges)
        if shared is not None:
            probes["redis"] = shared.probe
        if bcrypt_hasher is not None:
            stack.callback(bcrypt_hasher.close)
        activity = ActivityLog(
            stored.activity,
            clock,
            CursorCodec(derive_key(secret, "activity-cursor")),
            retention_days=settings.activity_days,
        )
        verifier = TotpVerifier(
            factors=stored.factors,
            codes=PyotpOneTimePasswords(),
            box=FernetSecretBox(resolve_encryption_keys(settings)),
            clock=clock,
            activity=activity,
        )
        purges["activity"] = activity.purge_expired
        purges["mfa_challenges"] = verifier.purge_expired_challenges
        delivery = MailDelivery(
            stored.outbox,
            mailer or _mailer(settings, clock),
            clock,
            DeliveryPolicy(first_retry=timedelta(seconds=settings.mail_retry_delay)),
        )
        sender = MailSender(delivery, clock)
        account_mail = AccountMail(
            tokens=stored.link_tokens,
            outbox=stored.outbox,
            clock=clock,
            uow=stored.uow,
            branding=Branding(APP_NAME, settings.public_url or DEFAULT_PUBLIC_URL),
            wake=sender.wake,
        )
        auth = AuthService(
            users=stored.users,
            sessions=stored.sessions,
            hasher=hasher,
            tokens=tokens,
            cache=cache,
            limiter=kept.shared_limiter,
            clock=clock,
            uow=stored.uow,
            policy=_auth_policy(settings),
            live_answer_ttl=kept.live_answer_ttl,
            second_factor=verifier,
            activity=activity,
            mail=account_mail,
        )
        live = LiveMetrics(stored.feed, clock, streams_per_user=settings.streams_per_user)
        stack.push_async_callback(close_within, "live streams", live.stop)
        mfa = MfaService(verifier=verifier, auth=auth, uow=stored.uow)
        yield Services(
            settings=settings,
            clock=clock,
            auth=auth,
            admin=AccountAdmin(auth, mfa=mfa),
            activity=activity,
            mfa=mfa,
            email=EmailFlows(
                auth=auth,
                mail=account_mail,
                users=stored.users,
                tokens=stored.link_tokens,
                hasher=hasher,
                limiter=limiter,
                clock=clock,
                uow=stored.uow,
                policy=EmailFlowPolicy.per_hour(settings.mail_rate_per_hour),
            ),
            mail=delivery,
            mail_sender=sender,
            metrics=MetricsService(
                metrics=kept.metrics, clock=clock, cursors=CursorCodec(derive_key(secret, "cursor"))
            ),
            backfill=BackfillService(kept.bulk, clock),
            idempotency=IdempotencyGuard(stored.idempotency, stored.uow),
            limiter=limiter,
            cache=cache,
            purges=purges,
            api_keys=ApiKeyService(
                keys=stored.api_keys,
                limiter=kept.shared_limiter,
                clock=clock,
                uow=stored.uow,
                hash_key=derive_key(secret, "api-key"),
                policy=ApiKeyPolicy(
                    rate_per_minute=settings.key_rate_per_minute,
                    # The keys' limit in the keys' own database (no Redis): the key's
                    # check counts its use, with the request's statement.
                    counted_with_check=stored.shared_limits is not None
                    and kept.shared_limiter is stored.shared_limits,
                ),
                activity=activity,
                users=stored.users,
            ),
            live=live,
            probes=probes,
            observability=Observability(
                breakers={"redis": shared.breaker} if shared is not None else {},
                dashboards=kept.dashboards,
                pool_stats=stored.pool_stats,
            ),
        )


@define(kw_only=True)
class _Storage:
    """The repositories of one storage choice, with its probes and purges."""

    users: UserRepository
    metrics: MetricRepository
    sessions: SessionRepository
    idempotency: IdempotencyStore
    bulk: BulkMetricStore
    uow: UnitOfWork
    factors: SecondFactorRepository
    activity: ActivityRepository
    api_keys: ApiKeyRepository
    feed: MetricFeed
    link_tokens: OneTimeTokenRepository
    outbox: MailQueue
    # Limits counted where every process sees them (failed logins per email,
    # requests per API key), when the storage can.
    shared_limits: RateLimiter | None = None
    probes: dict[str, Probe] = attrs.field(factory=dict)
    purges: dict[str, Purge] = attrs.field(factory=dict)
    pool_stats: Callable[[], dict[str, int]] | None = None


async def _postgres_storage(
    settings: Settings, stack: AsyncExitStack, *, upgrade: bool, answer_within: float | None
) -> _Storage:
    """Every repository over one pool, closed with ``stack``."""
    conninfo = await asyncio.to_thread(database_url, settings)
    if upgrade:
        await migrate.upgrade(conninfo)
    await migrate.require_current(conninfo)
    pool = await open_pool(
        conninfo,
        max_size=settings.db_pool_size or DEFAULT_POOL_SIZE,
        answer_within=answer_within,
    )
    stack.push_async_callback(close_within, "database pool", pool.close)
    limits = PostgresRateLimiter(pool)
    # Even with Redis: written in the database that holds the rows they guard.
    idempotency = PostgresIdempotencyStore(pool)
    return _Storage(
        users=PostgresUserRepository(pool),
        metrics=PostgresMetricRepository(pool),
        sessions=PostgresSessionRepository(pool),
        idempotency=idempotency,
        bulk=PostgresBulkMetricStore(pool),
        uow=PostgresUnitOfWork(pool),
        factors=PostgresSecondFactorRepository(pool),
        activity=PostgresActivityRepository(pool),
        # Counts each key's use in ``limits``'s rows (the same prefix) with its check.
        api_keys=PostgresApiKeyRepository(pool, limit_prefix=""),
        feed=PostgresMetricFeed(pool),
        link_tokens=PostgresOneTimeTokenRepository(pool),
        outbox=PostgresMailQueue(pool),
        shared_limits=limits,
        probes={"database": partial(ping, pool)},
        purges={
            "rate_limits": limits.purge_expired,
            "idempotency_keys": idempotency.purge_expired,
        },
        pool_stats=pool.get_stats,
    )


def _memory_storage() -> _Storage:
    """The fakes, linked as the database's foreign keys and transactions link its tables."""
    users = testing.InMemoryUserRepository()
    metrics = testing.InMemoryMetricRepository()
    sessions = testing.InMemorySessionRepository()
    keys = testing.InMemoryIdempotencyStore()
    factors = testing.InMemorySecondFactorRepository()
    activity = testing.InMemoryActivityRepository()
    testing.link_cascade(users, factors, activity)
    api_keys = testing.InMemoryApiKeyRepository(users)
    link_tokens = testing.InMemoryOneTimeTokenRepository()
    outbox = testing.InMemoryMailQueue()
    testing.link_cascade(users, link_tokens, metrics, sessions, keys, api_keys)
    return _Storage(
        users=users,
        metrics=metrics,
        sessions=sessions,
        idempotency=keys,
        bulk=testing.InMemoryBulkMetricStore(users, metrics),
        uow=testing.InMemoryUnitOfWork(
            factors, activity, link_tokens, outbox, users, metrics, sessions, keys, api_keys
        ),
        factors=factors,
        activity=activity,
        api_keys=api_keys,
        feed=testing.InMemoryMetricFeed(metrics, sessions, api_keys),
        link_tokens=link_tokens,
        outbox=outbox,
    )


@frozen(kw_only=True)
class _Caching:
    """Where the cache, the limits and cached dashboards live: in Redis, shared by
    every process, or in this one."""

    cache: Cache
    limiter: RateLimiter
    # Failed logins per email and requests per API key count where every process
    # sees them: one limit for the deployment, however many workers serve it.
    shared_limiter: RateLimiter
    metrics: MetricRepository
    bulk: BulkMetricStore
    dashboards: DashboardCache | None
    # How long a "session is live" answer may be kept in the cache.
    live_answer_ttl: float


def _caching(stored: _Storage, shared: _SharedState | None) -> _Caching:
    if shared is None:
        # Every limit in PostgreSQL when there is one: a limit per address or per
        # email is one for the deployment, not one per worker.
        limiter = stored.shared_limits or inprocess.InMemoryRateLimiter()
        return _Caching(
            cache=inprocess.InMemoryCache(),
            limiter=limiter,
            shared_limiter=limiter,
            metrics=stored.metrics,
            bulk=stored.bulk,
            dashboards=None,
            # An in-process cache is not shared between workers: never keep "live" in it.
            live_answer_ttl=0.0,
        )
    # Dashboards are cached only in a cache every process shares: a write
    # must make the next read fresh in all of them.
    dashboards = DashboardCache(shared.cache, JsonDashboardCodec())
    return _Caching(
        cache=shared.cache,
        limiter=shared.limiter,
        shared_limiter=shared.limiter,
        metrics=CachedMetricRepository(stored.metrics, dashboards, stored.uow),
        bulk=InvalidatingBulkStore(stored.bulk, dashboards),
        dashboards=dashboards,
        live_answer_ttl=SHARED_LIVE_SESSION_TTL,
    )


def _auth_policy(settings: Settings) -> AuthPolicy:
    return AuthPolicy(
        access_ttl=settings.access_ttl,
        refresh_ttl=settings.refresh_ttl,
        login_failures_per_email=settings.login_failures_per_email,
        new_device_notice=settings.new_device_notice,
        require_verified_email=settings.require_verified_email,
    )


def _mailer(settings: Settings, clock: Clock) -> Mailer:
    """SMTP when ``ENGAGE_SMTP_URL`` is set, else the outbox directory."""
    if settings.smtp_url is not None:
        return SmtpMailer(SmtpServer.parse(settings.smtp_url), settings.mail_from, clock=clock)
    return OutboxMailer(settings.data_dir / OUTBOX_DIR, settings.mail_from, clock=clock)


def database_url(settings: Settings) -> str:
    """``ENGAGE_DATABASE_URL``, or the embedded server's (started or joined here)."""
    if settings.database_url is not None:
        return settings.database_url
    return start_embedded(settings.data_dir)


def database_kept_running(settings: Settings) -> AbstractContextManager[None]:
    """For a long-running process (``engage serve``): while the block runs, the
    embedded server is started again whenever its process dies; nothing to do for
    ``ENGAGE_DATABASE_URL``'s, which its operator runs."""
    return nullcontext() if settings.database_url is not None else kept_running(settings.data_dir)


@frozen
class Database:
    """The database as the CLI works on it: its schema, the connections it
    allows, pg_dump archives of it and whole restores."""

    url: str

    @classmethod
    def of(cls, settings: Settings) -> Database:
        """The database ``settings`` name (the embedded server is started or joined)."""
        return cls(database_url(settings))

    async def upgrade(self) -> list[Migration]:
        """Apply pending migrations; the ones applied."""
        return await migrate.upgrade(self.url)

    async def schema_status(self) -> MigrationStatus:
        return await migrate.status(self.url)

    async def connection_budget(self) -> int:
        """How many connections the server allows its clients."""
        return await connection_budget(self.url)

    def describe(self) -> str:
        """``database NAME on HOST``, for messages (no password)."""
        return describe_target(self.url)

    def back_up(self, directory: Path, *, now: datetime) -> ArchiveContents:
        """A verified pg_dump archive in ``directory``."""
        return write_backup(self.url, directory, now=now)

    def restore(
        self, archive: Path, *, tools: PgTools | None = None
    ) -> tuple[ArchiveContents, list[RestoredTable]]:
        """Replace everything with ``archive``'s contents, all or nothing."""
        return restore_backup(self.url, archive, tools=tools)


# How long `forget_shared_cache` waits on Redis: a CLI command may be patient.
FORGET_TIMEOUT = 2.0


class SharedCacheUnreachable(Exception):
    """Redis could not be told to drop what it caches; why, in ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def forget_shared_cache(settings: Settings) -> bool:
    """With ``ENGAGE_REDIS_URL``, make every process stop trusting anything
    cached in Redis (every shard's epoch moves on, as after an outage that lost
    a write): True. Without it: False (each process's cache dies with it).
    ``SharedCacheUnreachable`` when Redis cannot be reached."""
    if settings.redis_url is None:
        return False
    timeout = max(settings.redis_timeout, FORGET_TIMEOUT)
    client = open_redis(settings.redis_url, connect_timeout=timeout, command_timeout=timeout)
    try:
        async with asyncio.timeout(4 * timeout):
            await RedisCache(client).advance_epoch()
    except FAILURES as exc:
        raise SharedCacheUnreachable(str(exc).strip() or type(exc).__name__) from exc
    finally:
        with suppress(*FAILURES):
            await client.aclose()
    return True


@frozen
class _SharedState:
    """Cache and limits in Redis, each behind the one circuit breaker, and the probe
    that reports it. Idempotency keys stay in PostgreSQL even so: there they are
    written in the same database as the rows they guard."""

    cache: Cache
    limiter: RateLimiter
    breaker: CircuitBreaker
    probe: Probe

    @classmethod
    def over(cls, client: RedisClient, *, call_timeout: float) -> _SharedState:
        # A call may take a connect and a command: twice the client's timeout.
        breaker = CircuitBreaker("redis", call_timeout=call_timeout)
        shared_cache = RedisCache(client)
        # After a restart every pooled connection is dead; each would fail once
        # (there are no retries) and could open the circuit again.
        breaker.on_recovery(partial(drop_idle_connections, client))

        async def ping() -> bool:
            return bool(await client.ping())

        # A lost write's epoch move must not wait for this process's next request.
        breaker.retry_pending_with(ping)

        async def probe() -> Degraded | None:
            try:
                await breaker.call(ping)
            except Unavailable:
                state = breaker.state
                return Degraded(
                    "unreachable" if state is BreakerState.CLOSED else f"circuit {state}"
                )
            return None

        return cls(
            cache=GuardedCache(shared_cache, breaker, forget_all=shared_cache.advance_epoch),
            limiter=GuardedRateLimiter(RedisRateLimiter(client), breaker),
            breaker=breaker,
            probe=probe,
        )


def _shared_state(settings: Settings, stack: AsyncExitStack) -> _SharedState | None:
    """Redis's cache and limits with ``ENGAGE_REDIS_URL``; its client closes with ``stack``."""
    if settings.redis_url is None:
        return None
    client = open_redis(
        settings.redis_url,
        connect_timeout=settings.redis_timeout,
        command_timeout=settings.redis_timeout,
    )
    stack.push_async_callback(close_within, "redis client", client.aclose)
    shared = _SharedState.over(client, call_timeout=2 * settings.redis_timeout)
    # Before the client closes: its background retry uses the client.
    stack.push_async_callback(close_within, "redis retry", shared.breaker.aclose)
    return shared
