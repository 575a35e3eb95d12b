"""Accounts and sessions: sign up, log in, refresh, log out, me, password, delete,
and the user's sessions per device. The second factor's rules are in
``services.mfa`` and the activity log's in ``services.activity``; this module
calls into both."""

from __future__ import annotations

import enum
import hashlib
import math
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID, uuid4

import attrs
from attrs import define, frozen

from engage_core.errors import (
    EmailNotVerified,
    FieldError,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    ValidationFailed,
)
from engage_core.model import (
    UNKNOWN_CLIENT,
    ActivityKind,
    Client,
    DeviceSession,
    Email,
    LoginPurpose,
    Password,
    Session,
    User,
)
from engage_core.ports import (
    AccessClaims,
    Cache,
    Clock,
    PasswordHasher,
    RateLimiter,
    SessionRefused,
    SessionRepository,
    TokenIssuer,
    UnitOfWork,
    UserRepository,
)
from engage_core.services._outcome import kept
from engage_core.services.account_mail import AccountMail
from engage_core.services.activity import ActivityLog
from engage_core.services.mfa import MfaRequired, TotpVerifier

__all__ = [
    "AccessGrant",
    "Admission",
    "AuthPolicy",
    "AuthService",
    "BrowserLogin",
    "LogoutScope",
    "Principal",
    "hash_refresh_token",
]

_LIVE = b"1"
_ENDED = b"0"
T = TypeVar("T")


class LogoutScope(enum.StrEnum):
    CURRENT = "current"
    ALL = "all"


@frozen(kw_only=True)
class AuthPolicy:
    access_ttl: timedelta = timedelta(minutes=15)
    refresh_ttl: timedelta = timedelta(days=14)
    login_failures_per_email: int = 5
    login_failure_window: timedelta = timedelta(minutes=15)
    # Refuse logins until the account's address is verified (ENGAGE_REQUIRE_VERIFIED_EMAIL).
    require_verified_email: bool = False
    # How often a session's last_seen_at is written as it is used (reads stay reads).
    last_seen_every: timedelta = timedelta(minutes=1)
    # Mail the account when it is signed in to from a user agent it never had a session from.
    new_device_notice: bool = True


@frozen
class Principal:
    """Who an authenticated request acts for."""

    user_id: UUID
    session_id: UUID


@frozen
class Admission:
    """The caller of a valid access token, admitted before its session's liveness
    is known: ``run`` checks the session with the work it is for (one round trip
    for both where the store can), and gives the work's result only for a live
    session. Every answer to the caller must come from ``run``."""

    principal: Principal
    _auth: AuthService = attrs.field(repr=False)
    # The cache already said "live" (only a cache every process shares may).
    _known_live: bool = False

    async def run(self, work: Callable[[Principal], Awaitable[T]]) -> T:
        """``work``'s result (or error) for a live session; ``Unauthorized`` otherwise,
        whatever the work did (what it wrote is then not kept)."""
        if self._known_live:
            return await work(self.principal)
        return await self._auth._run_checked(self.principal, work)


@frozen(kw_only=True)
class AccessGrant:
    """An access token for a bearer client."""

    access_token: str
    expires_at: datetime
    expires_in: int


@frozen(kw_only=True)
class BrowserLogin:
    """What a browser login or refresh hands out: both tokens and who they are for."""

    user: User
    session_id: UUID
    access_token: str
    access_expires_at: datetime
    refresh_token: str = attrs.field(repr=False)
    refresh_expires_at: datetime


def hash_refresh_token(token: str) -> str:
    """Refresh tokens are 256 random bits, so a fast hash is enough to store them."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _read_credentials(
    email: object, password: object
) -> tuple[Email | None, Password | None, list[FieldError]]:
    """Each credential parsed, or None; the faults of both."""
    errors: list[FieldError] = []
    parsed_email = parsed_password = None
    try:
        parsed_email = Email(email)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
    try:
        parsed_password = Password(password)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
    return parsed_email, parsed_password, errors


def _parse_credentials(email: object, password: object) -> tuple[Email, Password]:
    """Both credentials, or one ``ValidationFailed`` with every fault."""
    parsed_email, parsed_password, errors = _read_credentials(email, password)
    if parsed_email is None or parsed_password is None:
        raise ValidationFailed(errors)
    return parsed_email, parsed_password


@define
class AuthService:
    users: UserRepository
    sessions: SessionRepository
    hasher: PasswordHasher
    tokens: TokenIssuer
    cache: Cache
    limiter: RateLimiter
    clock: Clock
    uow: UnitOfWork
    policy: AuthPolicy = AuthPolicy()
    # The second factor and the activity log, when the deployment has them (it does:
    # bootstrap wires both; bare AuthServices in tests may go without).
    second_factor: TotpVerifier | None = None
    activity: ActivityLog | None = None
    # The verification link at sign-up, the notice after a password change.
    mail: AccountMail | None = None
    # How long (seconds) a "session is live" answer may be kept in ``cache``: the
    # composition root's to say, as only it knows whether every process shares that
    # cache (an end must take effect at once everywhere). Zero: never kept. An
    # "ended" answer is final and always kept.
    live_answer_ttl: float = 0.0
    _dummy_hash: str | None = attrs.field(default=None, init=False, repr=False)

    # --- accounts --------------------------------------------------------------

    async def sign_up(
        self, *, email: object, password: object, client: Client = UNKNOWN_CLIENT
    ) -> User:
        """Create an account. ``Conflict`` if the email is taken in any letter case."""
        parsed_email, parsed_password = _parse_credentials(email, password)
        now = self.clock.now()
        user = User(
            id=uuid4(),
            email=parsed_email,
            password_hash=await self.hasher.hash(parsed_password),
            created_at=now,
            updated_at=now,
        )
        async with self.uow.atomic():
            await self.users.add(user)
            if self.mail is not None:
                await self.mail.signed_up(user)
            await self._record(ActivityKind.SIGNUP, client, user=user)
        return user

    async def me(self, principal: Principal) -> User:
        user = await self.users.get(principal.user_id)
        if user is None:
            raise Unauthorized("authentication required", reason="user gone")
        return user

    async def change_password(
        self,
        principal: Principal,
        *,
        current_password: object,
        new_password: object,
        client: Client = UNKNOWN_CLIENT,
    ) -> None:
        """Replace the password and end every session but the caller's."""
        try:
            new = Password(new_password)
        except ValidationFailed as exc:
            raise exc.renamed("new_password") from None
        user = await self._confirm(principal, current_password)
        new_hash = await self.hasher.hash(new)
        current = await self.sessions.get(principal.session_id)
        now = self.clock.now()
        async with self.uow.atomic():
            changed = await self.users.set_password_hash(
                user.id, new_hash, now, replacing=user.password_hash
            )
            if not changed:  # changed meanwhile: the password given is no longer it
                raise Forbidden("the password is not correct")
            ended = await self.sessions.end_all_for_user(
                user.id,
                now,
                "password changed",
                keep_family=current.family_id if current else None,
            )
            await self._end_challenges(user.id)
            await self._record(ActivityKind.PASSWORD_CHANGED, client, user=user)
            await self._forget(ended)
            if self.mail is not None:
                await self.mail.password_changed(user)

    async def delete_account(self, principal: Principal, *, password: object) -> None:
        """Delete the user and, with them, all their sessions and metrics."""
        user = await self._confirm(principal, password)
        async with self.uow.atomic():
            await self.remove(user, reason="account deleted")

    # --- logging in and out ----------------------------------------------------

    async def log_in(
        self, *, email: object, password: object, client: Client = UNKNOWN_CLIENT
    ) -> BrowserLogin | MfaRequired:
        """Check credentials and start a refreshable session, or, with the second
        factor on, a challenge that a code completes (``MfaService.verify_login``)."""
        user = await self._check_credentials(email, password, client)
        if self.second_factor is not None and await self.second_factor.is_on(user.id):
            return await self.second_factor.open_challenge(user, LoginPurpose.BROWSER, client)
        return await self.start_browser_session(user, client)

    async def issue_token(
        self, *, email: object, password: object, client: Client = UNKNOWN_CLIENT
    ) -> AccessGrant | MfaRequired:
        """Check credentials and hand out an access token with a session of its own
        that lasts as long as the token and cannot be refreshed (or, with the second
        factor on, a challenge)."""
        user = await self._check_credentials(email, password, client)
        if self.second_factor is not None and await self.second_factor.is_on(user.id):
            return await self.second_factor.open_challenge(user, LoginPurpose.TOKEN, client)
        return await self.start_token_session(user, client)

    async def start_browser_session(self, user: User, client: Client) -> BrowserLogin:
        """A refreshable session for a user whose credentials were checked."""
        login, session = self._new_session(
            user, family_id=uuid4(), now=self.clock.now(), client=client
        )
        async with self.uow.atomic():
            await self._hold_password(user)
            await self._notice_if_new_device(user, client)
            await self.sessions.add(session)
            await self._record(ActivityKind.LOGIN, client, user=user)
        return await self._with_access_token(login, session)

    async def start_token_session(self, user: User, client: Client) -> AccessGrant:
        """A bearer token, with a session as long as the token, for a checked user."""
        now = self.clock.now()
        # Its refresh token is never handed out: the session ends with the access token.
        _, session = self._session(
            user, family_id=uuid4(), now=now, client=client, lifetime=self.policy.access_ttl
        )
        expires_at = session.expires_at
        async with self.uow.atomic():
            await self._hold_password(user)
            await self._notice_if_new_device(user, client)
            await self.sessions.add(session)
            await self._record(ActivityKind.LOGIN, client, user=user)
        token = await self.tokens.issue(
            AccessClaims(
                user_id=user.id, session_id=session.id, issued_at=now, expires_at=expires_at
            )
        )
        return AccessGrant(
            access_token=token,
            expires_at=expires_at,
            expires_in=int(self.policy.access_ttl.total_seconds()),
        )

    async def _hold_password(self, user: User) -> None:
        """Inside the unit of work that starts a session: refused when the password
        checked for it has changed meanwhile (a change or reset that ended every
        session would not have seen this one), and kept until the unit ends."""
        if not await self.users.hold_password(user.id, user.password_hash):
            raise Unauthorized(reason="password changed while logging in")

    async def refresh(self, refresh_token: object, client: Client = UNKNOWN_CLIENT) -> BrowserLogin:
        """Trade a refresh token for new tokens. The old one is spent: presenting
        it again ends its whole session family."""
        now = self.clock.now()
        old, user = await self._refreshable(refresh_token, client, now)
        login, new = self._new_session(
            user,
            family_id=old.family_id,
            now=now,
            client=old.client if client == UNKNOWN_CLIENT else client,
        )
        if not await self.sessions.rotate(old.id, new, now):
            # Another request spent this token first: the same as a reuse.
            await self._end_reused_family(old, client)
            raise Unauthorized("invalid refresh token", reason="refresh token raced")
        await self._forget([old.id])
        return await self._with_access_token(login, new)

    async def refresh_principal(
        self, refresh_token: object, client: Client = UNKNOWN_CLIENT
    ) -> Principal:
        """Who a refresh token acts for, without spending it: for a browser whose
        access cookie has expired to log out (``log_out``). A spent one ends its
        session family, as ``refresh`` does."""
        session, user = await self._refreshable(refresh_token, client, self.clock.now())
        return Principal(user.id, session.id)

    async def _refreshable(
        self, refresh_token: object, client: Client, now: datetime
    ) -> tuple[Session, User]:
        """The live session a refresh token is the current one of, and its user."""
        if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > 256:
            raise Unauthorized("refresh token required", reason="no refresh token")
        old = await self.sessions.find_by_token_hash(hash_refresh_token(refresh_token))
        if old is None:
            raise Unauthorized("invalid refresh token", reason="unknown refresh token")
        if old.end_reason == "rotated":
            await self._end_reused_family(old, client)
            raise Unauthorized("invalid refresh token", reason="refresh token reused")
        if not old.is_live(now):
            raise Unauthorized("invalid refresh token", reason="session ended")
        user = await self.users.get(old.user_id)
        if user is None:
            raise Unauthorized("invalid refresh token", reason="user gone")
        return old, user

    async def log_out(
        self,
        principal: Principal,
        scope: LogoutScope = LogoutScope.CURRENT,
        client: Client = UNKNOWN_CLIENT,
    ) -> None:
        now = self.clock.now()
        user = await self.users.get(principal.user_id)
        async with self.uow.atomic():
            if scope is LogoutScope.ALL:
                ended = await self.sessions.end_all_for_user(principal.user_id, now, "logged out")
            else:
                session = await self.sessions.get(principal.session_id)
                ended = (
                    await self.sessions.end_family(session.family_id, now, "logged out")
                    if session is not None
                    else []
                )
            if user is not None:
                await self._record(ActivityKind.LOGOUT, client, user=user)
            await self._forget([*ended, principal.session_id])

    async def authenticate(self, access_token: str) -> Principal:
        """The principal of a valid access token whose session is still live."""
        admission = await self.admit(access_token)
        return await admission.run(_itself)

    async def admit(self, access_token: str) -> Admission:
        """The caller of a valid access token, whose session ``Admission.run`` checks
        with the work it runs; ``Unauthorized`` at once for a bad token or a session
        the cache knows has ended."""
        claims = await self.tokens.verify(access_token)
        principal = Principal(claims.user_id, claims.session_id)
        cached = await self.cache.get(_liveness_key(claims.session_id))
        if cached is not None and cached != _LIVE:
            raise Unauthorized("authentication required", reason="session ended")
        return Admission(principal, self, known_live=cached == _LIVE)

    async def devices(self, principal: Principal) -> list[tuple[DeviceSession, bool]]:
        """The caller's live sessions per device, each with whether it is the caller's own."""
        current = await self.sessions.get(principal.session_id)
        found = await self.sessions.live_devices(principal.user_id, self.clock.now())
        return [(d, current is not None and d.id == current.family_id) for d in found]

    async def end_device(
        self, principal: Principal, device_id: UUID, client: Client = UNKNOWN_CLIENT
    ) -> None:
        """End one of the caller's sessions (a device) at once, in every process;
        ``NotFound`` when it is not one of the caller's live sessions."""
        now = self.clock.now()
        live = await self.sessions.live_devices(principal.user_id, now)
        if not any(d.id == device_id for d in live):
            raise NotFound("no such session")
        user = await self.me(principal)
        async with self.uow.atomic():
            ended = await self.sessions.end_family(device_id, now, "ended by the user")
            if not ended:  # ended meanwhile (by a second request like this one): not twice
                raise NotFound("no such session")
            await self._record(ActivityKind.SESSION_ENDED, client, user=user)
            await self._forget(ended)

    async def confirm_password(self, principal: Principal, password: object) -> User:
        """The caller's user, once they have proved they know its password
        (``Forbidden`` otherwise; failures count towards the email's limit)."""
        return await self._confirm(principal, password)

    async def check_not_locked(self, email: Email, client: Client) -> None:
        """``RateLimited`` while the email has too many failed logins."""
        await self._refuse_if_failing(email, "too many failed logins for this email", client)

    async def count_failed_login(self, email: Email) -> None:
        await self._count_failure(email)

    async def unlock(self, email: Email) -> None:
        """Forget the email's failed logins (the operator's `engage user unlock`)."""
        await self.limiter.reset(_failures_key(email))

    async def end_sessions_of(self, user_id: UUID, *, reason: str) -> None:
        """End every session of a user, at once in every process (inside a unit of
        work: as it commits), and every login of theirs that waits for its code."""
        await self._forget(await self.sessions.end_all_for_user(user_id, self.clock.now(), reason))
        await self._end_challenges(user_id)

    async def _end_challenges(self, user_id: UUID) -> None:
        """A login that waits for its second factor was opened on the password: one
        that changes (or an account that ends) ends it, as it ends the sessions."""
        if self.second_factor is not None:
            await self.second_factor.end_challenges_of(user_id)

    async def remove(self, user: User, *, reason: str) -> None:
        """Delete the user and, with them, all their data (inside a unit of work): their
        sessions end at once in every process, and mail to them not sent yet is dropped
        (its links would lead nowhere)."""
        await self.end_sessions_of(user.id, reason=reason)
        await self.users.delete(user.id)
        if self.mail is not None:
            await self.mail.drop_unsent_to(user.email)

    # --- internals -------------------------------------------------------------

    async def _check_credentials(self, email: object, password: object, client: Client) -> User:
        """The user these credentials belong to, in the same time and with the same
        answer whether the email is unknown or the password wrong."""
        parsed_email, parsed_password, _ = _read_credentials(email, password)
        user = None
        if parsed_email is not None:
            # An address that cannot exist needs no limit: no guess can succeed.
            await self._refuse_if_failing(
                parsed_email, "too many failed logins for this email", client
            )
            user = await self.users.get_by_email(parsed_email.canonical)
        if user is None or parsed_password is None:
            await self.hasher.verify(parsed_password or Password("x" * 8), await self._dummy())
            matched = False
        else:
            matched = await self.hasher.verify(parsed_password, user.password_hash)
        if user is None or parsed_password is None or not matched:
            if parsed_email is not None:
                await self._count_failure(parsed_email)
                # Recorded for an unknown email too: both answers cost the same.
                await self._record(ActivityKind.LOGIN_FAILED, client, user=user, email=parsed_email)
            raise Unauthorized("invalid email or password", reason="bad credentials")
        if self.hasher.needs_rehash(user.password_hash):
            # Never over a password changed since it was read.
            rehashed = await self.hasher.hash(parsed_password)
            if await self.users.set_password_hash(
                user.id, rehashed, self.clock.now(), replacing=user.password_hash
            ):
                user.password_hash = rehashed
        if self.policy.require_verified_email and not user.email_verified:
            raise EmailNotVerified(
                "verify your email address first: follow the link in the mail we sent"
                " (resetting the password also verifies it)"
            )
        return user

    async def _confirm(self, principal: Principal, password: object) -> User:
        """The caller's user, once they have proved they know its password."""
        user = await self.me(principal)
        await self._refuse_if_failing(user.email, "too many failed password checks")
        try:
            matched = await self.hasher.verify(Password(password), user.password_hash)
        except ValidationFailed:
            matched = False
        if not matched:
            await self._count_failure(user.email)
            raise Forbidden("the password is not correct")
        return user

    async def _refuse_if_failing(
        self, email: Email, message: str, client: Client | None = None
    ) -> None:
        decision = await self.limiter.peek(
            _failures_key(email),
            limit=self.policy.login_failures_per_email,
            window=self.policy.login_failure_window.total_seconds(),
        )
        if not decision.allowed:
            if client is not None and self.activity is not None:
                # Looked up whether or not an account has the email: the same cost.
                user = await self.users.get_by_email(email.canonical)
                await self._record(ActivityKind.LOGIN_LOCKED, client, user=user, email=email)
            raise RateLimited(
                f"{message}; try again later", retry_after=math.ceil(decision.retry_after)
            )

    async def _count_failure(self, email: Email) -> None:
        await self.limiter.hit(
            _failures_key(email),
            limit=self.policy.login_failures_per_email,
            window=self.policy.login_failure_window.total_seconds(),
        )

    async def _dummy(self) -> str:
        """A real hash of a random password, so unknown emails cost a real check."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hasher.hash(Password(secrets.token_urlsafe(24)))
        return self._dummy_hash

    def _session(
        self, user: User, *, family_id: UUID, now: datetime, client: Client, lifetime: timedelta
    ) -> tuple[str, Session]:
        """A new session of ``family_id`` and its refresh token (stored as a hash only)."""
        refresh_token = secrets.token_urlsafe(32)
        session = Session(
            id=uuid4(),
            user_id=user.id,
            family_id=family_id,
            token_hash=hash_refresh_token(refresh_token),
            created_at=now,
            expires_at=now + lifetime,
            client=client,
            last_seen_at=now,
        )
        return refresh_token, session

    def _new_session(
        self, user: User, *, family_id: UUID, now: datetime, client: Client
    ) -> tuple[BrowserLogin, Session]:
        refresh_token, session = self._session(
            user, family_id=family_id, now=now, client=client, lifetime=self.policy.refresh_ttl
        )
        login = BrowserLogin(
            user=user,
            session_id=session.id,
            access_token="",
            access_expires_at=now,
            refresh_token=refresh_token,
            refresh_expires_at=session.expires_at,
        )
        return login, session

    async def _with_access_token(self, login: BrowserLogin, session: Session) -> BrowserLogin:
        now = session.created_at
        expires_at = min(now + self.policy.access_ttl, session.expires_at)
        token = await self.tokens.issue(
            AccessClaims(
                user_id=session.user_id, session_id=session.id, issued_at=now, expires_at=expires_at
            )
        )
        return attrs.evolve(login, access_token=token, access_expires_at=expires_at)

    async def _run_checked(
        self, principal: Principal, work: Callable[[Principal], Awaitable[T]]
    ) -> T:
        """``work``'s outcome once the session is found live, checked with it."""
        now = self.clock.now()
        key = _liveness_key(principal.session_id)
        checked = await self.sessions.run_checked(
            principal.session_id, principal.user_id, now, kept(lambda: work(principal))
        )
        if isinstance(checked, SessionRefused):
            if checked.ended:
                # Final: an ended session never comes back. Kept as long as any token for it lives.
                await self.cache.set(key, _ENDED, ttl=self.policy.access_ttl.total_seconds())
            raise Unauthorized("authentication required", reason="session ended")
        session, outcome = checked
        await self._note_seen(session, now)
        if self.live_answer_ttl > 0:
            remaining = (session.expires_at - now).total_seconds()
            # Only if absent: a concurrent logout's "ended" must win over this answer.
            await self.cache.set(
                key,
                _LIVE,
                ttl=min(self.live_answer_ttl, remaining),
                only_if_absent=True,
            )
        return outcome.unwrap()

    async def _note_seen(self, session: Session, now: datetime) -> None:
        """Write ``last_seen_at`` when it is older than ``last_seen_every``: a session
        used all day costs one write a minute, not one per request."""
        stale = now - self.policy.last_seen_every
        if session.last_seen_at is None or session.last_seen_at <= stale:
            await self.sessions.touch(session.id, now, unless_after=stale)

    async def _end_reused_family(self, old: Session, client: Client) -> None:
        now = self.clock.now()
        user = await self.users.get(old.user_id)
        async with self.uow.atomic():
            ended = await self.sessions.end_family(old.family_id, now, "refresh reuse")
            if user is not None:
                await self._record(ActivityKind.REFRESH_REUSED, client, user=user)
            await self._forget(ended)

    async def _notice_if_new_device(self, user: User, client: Client) -> None:
        """Queue the new-device mail (before the session is stored), unless this is the
        account's first sign-in or its user agent has signed in before."""
        if self.mail is None or not self.policy.new_device_notice:
            return
        if not await self.sessions.has_sessions(user.id):
            return
        if await self.sessions.has_sessions_from(user.id, client.user_agent):
            return
        await self.mail.new_device(user, client)

    async def _record(
        self,
        kind: ActivityKind,
        client: Client,
        *,
        user: User | None,
        email: Email | None = None,
    ) -> None:
        if self.activity is not None:
            await self.activity.record(kind, client=client, user=user, email=email)

    async def _forget(self, session_ids: list[UUID]) -> None:
        """Record in the cache that these sessions ended, once the unit of work in
        progress commits (at once outside one): a rollback leaves them live. This
        overwrites any "live" answer, and a "live" answer never overwrites it (see above)."""
        ttl = self.policy.access_ttl.total_seconds()

        async def mark_ended() -> None:
            for session_id in session_ids:
                await self.cache.set(_liveness_key(session_id), _ENDED, ttl=ttl)

        if session_ids:
            await self.uow.after_commit(mark_ended)


async def _itself(principal: Principal) -> Principal:
    return principal


def _liveness_key(session_id: UUID) -> str:
    return f"session-live:{session_id}"


def _failures_key(email: Email) -> str:
    return f"login-failures:{email.canonical}"
