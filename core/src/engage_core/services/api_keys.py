"""API keys: scoped bearer credentials for devices and scripts, created by their user.

A key reads ``engk_<id>_<secret>``: the id (32 hex digits) names its row, the
secret (240 random bits) is shown once and stored only as a keyed hash
(HMAC-SHA256: a fast hash is right for a secret this long, where bcrypt would
cost every request a hash). A key authenticates on the metrics endpoints only,
within its scopes. Each use reads the key's row, never a "valid" answer cached
in the process, so a revoked or expired key is refused at once everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar
from uuid import UUID, uuid4

from attrs import define, field, frozen

from engage_core.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    ValidationFailed,
)
from engage_core.model import (
    KEY_PREFIX,
    OPERATOR,
    UNKNOWN_CLIENT,
    ActivityKind,
    ApiKey,
    ApiKeyScope,
    Client,
    OwnedApiKey,
    Timestamp,
)
from engage_core.ports import (
    LAST_USED_RESOLUTION,
    ApiKeyRepository,
    Clock,
    KeyRefused,
    RateCount,
    RateLimiter,
    UnitOfWork,
    UserRepository,
)
from engage_core.services._outcome import kept
from engage_core.services.activity import ActivityLog

# The key and its scopes (model) and the repository's port (ports) are re-exported
# here, where they were defined before.
__all__ = [
    "KEY_PREFIX",
    "LAST_USED_RESOLUTION",
    "MAX_KEYS_PER_USER",
    "MAX_NAME_LENGTH",
    "RATE_WINDOW",
    "SECRET_BYTES",
    "ApiKey",
    "ApiKeyPolicy",
    "ApiKeyRepository",
    "ApiKeyScope",
    "ApiKeyService",
    "IssuedApiKey",
    "KeyAdmission",
    "KeyPrincipal",
    "OwnedApiKey",
    "check_scopes",
    "hash_api_key",
    "looks_like_api_key",
]

SECRET_BYTES = 30  # 240 bits, 40 URL-safe characters
MAX_NAME_LENGTH = 100
MAX_KEYS_PER_USER = 100
RATE_WINDOW = 60.0
_TOKEN = re.compile(r"engk_([0-9a-f]{32})_([A-Za-z0-9_-]{40})", re.ASCII)
# Control characters (C0, DEL and C1: U+0085 breaks a line as a newline does) and the
# line and paragraph separators: a name is one line wherever it is shown.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
T = TypeVar("T")


@frozen(kw_only=True)
class IssuedApiKey:
    """A new key and its full text, which exists only in this answer."""

    key: ApiKey
    token: str = field(repr=False)


@frozen
class KeyPrincipal:
    """Who a request authenticated by an API key acts for, and by which key."""

    user_id: UUID
    key_id: UUID
    expires_at: datetime | None


@frozen(kw_only=True)
class ApiKeyPolicy:
    rate_per_minute: int = 600
    # True when the keys' store keeps the per-key limit too (PostgreSQL without
    # Redis): ``KeyAdmission.run`` then checks the key, counts its use and does the
    # work in one call to ``ApiKeyRepository.run_checked`` (one round trip).
    counted_with_check: bool = False


# How many keys' owners a process remembers (``ApiKeyService.admit``).
MAX_KNOWN_KEYS = 4096


@frozen
class _KnownKey:
    """What never changes about a key once created: its owner, its secret's hash
    and its expiry. Whether it may still be used is never remembered."""

    user_id: UUID
    secret_hash: str = field(repr=False)
    expires_at: datetime | None


@frozen
class KeyAdmission:
    """A request bearing an API key for ``scope``, whose key ``run`` checks (and
    counts) with the work it is for. Every answer to the caller must come from
    ``run``."""

    _token: str = field(repr=False)
    _scope: ApiKeyScope
    _service: ApiKeyService = field(repr=False)

    async def run(self, work: Callable[[KeyPrincipal], Awaitable[T]]) -> T:
        """``work``'s result (or error) for a usable key holding the scope, within its
        rate; what ``ApiKeyService.authenticate`` raises otherwise, whatever the work
        did (what it wrote is then not kept)."""
        return await self._service._run_checked(self._token, self._scope, work)


def _unknown() -> Unauthorized:
    return Unauthorized("invalid API key", reason="unknown api key")


def _rate_key(key_id: UUID) -> str:
    return f"api-key:{key_id}"


def hash_api_key(hash_key: bytes, token: str) -> str:
    return hmac.new(hash_key, token.encode("ascii"), hashlib.sha256).hexdigest()


def looks_like_api_key(token: str) -> bool:
    """Whether a bearer token is meant as an API key (rather than an access token)."""
    return token.startswith(KEY_PREFIX)


def _check_name(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValidationFailed.single("name", "must be a string")
    name = raw.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise ValidationFailed.single("name", f"must be 1 to {MAX_NAME_LENGTH} characters long")
    if _CONTROL.search(name):
        raise ValidationFailed.single("name", "may not hold control characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationFailed.single("name", "is not valid Unicode") from None
    return name


def check_scopes(raw: object) -> frozenset[ApiKeyScope]:
    known = ", ".join(scope.value for scope in ApiKeyScope)
    if not isinstance(raw, list | tuple) or not raw:
        raise ValidationFailed.single("scopes", f"must be a non-empty list of: {known}")
    scopes = set()
    for item in raw:
        if not isinstance(item, str) or item not in ApiKeyScope.__members__.values():
            raise ValidationFailed.single("scopes", f"may hold only: {known}")
        scopes.add(ApiKeyScope(item))
    return frozenset(scopes)


def _check_expiry(raw: object, now: datetime) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = Timestamp(raw).value
    except ValidationFailed as exc:
        raise ValidationFailed(FieldError("expires_at", e.message) for e in exc.errors) from None
    if moment <= now:
        raise ValidationFailed.single("expires_at", "must be in the future")
    return moment


@define
class ApiKeyService:
    keys: ApiKeyRepository
    limiter: RateLimiter
    clock: Clock
    uow: UnitOfWork
    hash_key: bytes = field(repr=False)
    policy: ApiKeyPolicy = ApiKeyPolicy()
    # Creations and revocations are recorded here, in the unit of work of the change.
    activity: ActivityLog | None = None
    users: UserRepository | None = None
    # The owners of keys this process has seen (``_KnownKey``), oldest first.
    _known: dict[UUID, _KnownKey] = field(factory=dict, init=False, repr=False)

    async def create(
        self,
        user_id: UUID,
        *,
        name: object,
        scopes: object,
        expires_at: object = None,
        client: Client = UNKNOWN_CLIENT,
    ) -> IssuedApiKey:
        """A new key for the user; its text is in the answer and nowhere else."""
        now = self.clock.now()
        errors: list[FieldError] = []

        def checked(check: Callable[[], T]) -> T | None:
            try:
                return check()
            except ValidationFailed as exc:
                errors.extend(exc.errors)
                return None

        checked_name = checked(lambda: _check_name(name))
        checked_scopes = checked(lambda: check_scopes(scopes))
        checked_expiry = checked(lambda: _check_expiry(expires_at, now))
        if errors or checked_name is None or checked_scopes is None:
            raise ValidationFailed(errors)
        key_id = uuid4()
        token = f"{KEY_PREFIX}{key_id.hex}_{secrets.token_urlsafe(SECRET_BYTES)}"
        key = ApiKey(
            id=key_id,
            user_id=user_id,
            name=checked_name,
            scopes=checked_scopes,
            secret_hash=hash_api_key(self.hash_key, token),
            created_at=now,
            expires_at=checked_expiry,
        )
        async with self.uow.atomic():
            if await self.keys.count_usable(user_id, now) >= MAX_KEYS_PER_USER:
                raise Conflict(
                    f"a user may hold at most {MAX_KEYS_PER_USER} keys; revoke one first"
                )
            await self.keys.add(key)
            await self._record(ActivityKind.API_KEY_CREATED, key, client)
        return IssuedApiKey(key=key, token=token)

    async def list_for(self, user_id: UUID) -> Sequence[ApiKey]:
        return await self.keys.for_user(user_id)

    async def every_key(self) -> Sequence[OwnedApiKey]:
        return await self.keys.every_key()

    async def revoke(
        self, user_id: UUID, key_id: object, client: Client = UNKNOWN_CLIENT
    ) -> ApiKey:
        """Revoke one of the user's keys: refused at once from then on. ``NotFound``
        for a key that is not theirs or is revoked already."""
        key = await self._find(key_id)
        if key is None or key.user_id != user_id:
            raise NotFound("no such API key")
        return await self._revoke(key, client)

    async def revoke_any(self, key_id: object, client: Client = OPERATOR) -> ApiKey:
        """An operator's revocation, whoever holds the key."""
        key = await self._find(key_id)
        if key is None:
            raise NotFound(f"no API key with id {key_id}")
        return await self._revoke(key, client)

    def admit(self, token: str, scope: ApiKeyScope) -> KeyAdmission:
        """The request of ``token`` for ``scope``, whose key ``KeyAdmission.run``
        checks with the work it runs."""
        return KeyAdmission(token, scope, self)

    async def authenticate(self, token: str, scope: ApiKeyScope) -> KeyPrincipal:
        """The principal of a usable key that holds ``scope``: 401 for a key that is
        unknown, revoked or expired, 403 for one without the scope, 429 past its rate."""
        match = _TOKEN.fullmatch(token)
        key = await self.keys.get(UUID(match[1])) if match else None
        if key is None or not hmac.compare_digest(
            key.secret_hash, hash_api_key(self.hash_key, token)
        ):
            raise _unknown()
        now = self.clock.now()
        if key.revoked_at is not None:
            raise Unauthorized("this API key has been revoked", reason="api key revoked")
        if not key.is_usable(now):
            raise Unauthorized("this API key has expired", reason="api key expired")
        if scope not in key.scopes:
            raise Forbidden(f"this API key does not have the {scope.value} scope")
        decision = await self.limiter.hit(
            _rate_key(key.id), limit=self.policy.rate_per_minute, window=RATE_WINDOW
        )
        if not decision.allowed:
            raise self._rate_limited(decision.retry_after)
        await self._note_used(key, now)
        return KeyPrincipal(key.user_id, key.id, key.expires_at)

    async def _run_checked(
        self, token: str, scope: ApiKeyScope, work: Callable[[KeyPrincipal], Awaitable[T]]
    ) -> T:
        """``work``'s outcome for the key of ``token``, checked and counted with it
        when the keys' store counts uses too; else ``authenticate``, then the work."""
        if not self.policy.counted_with_check:
            return await work(await self.authenticate(token, scope))
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise _unknown()
        key_id = UUID(match[1])
        secret_hash = hash_api_key(self.hash_key, token)
        known = self._known.get(key_id)
        if known is None:
            # The key's owner is needed before its work can run: read once per process.
            key = await self.keys.get(key_id)
            if key is None or not hmac.compare_digest(key.secret_hash, secret_hash):
                raise _unknown()
            known = self._remember(key)
        elif not hmac.compare_digest(known.secret_hash, secret_hash):
            raise _unknown()
        principal = KeyPrincipal(known.user_id, key_id, known.expires_at)

        now = self.clock.now()
        checked = await self.keys.run_checked(
            key_id,
            known.user_id,
            secret_hash,
            scope,
            now,
            kept(lambda: work(principal)),
            count=RateCount(_rate_key(key_id), self.policy.rate_per_minute, RATE_WINDOW),
        )
        if isinstance(checked, KeyRefused):
            if checked.reason == "unknown":  # deleted (with its user) since it was read
                self._known.pop(key_id, None)
            raise self._refusal(checked, scope)
        key, outcome = checked
        await self._note_used(key, now)
        return outcome.unwrap()

    def _remember(self, key: ApiKey) -> _KnownKey:
        known = _KnownKey(key.user_id, key.secret_hash, key.expires_at)
        if len(self._known) >= MAX_KNOWN_KEYS:
            del self._known[next(iter(self._known))]  # the longest known
        self._known[key.id] = known
        return known

    def _refusal(self, refused: KeyRefused, scope: ApiKeyScope) -> Exception:
        match refused.reason:
            case "unknown":
                return _unknown()
            case "revoked":
                return Unauthorized("this API key has been revoked", reason="api key revoked")
            case "expired":
                return Unauthorized("this API key has expired", reason="api key expired")
            case "scope":
                return Forbidden(f"this API key does not have the {scope.value} scope")
            case "rate":
                return self._rate_limited(refused.retry_after)

    def _rate_limited(self, retry_after: float) -> RateLimited:
        return RateLimited(
            f"this API key is limited to {self.policy.rate_per_minute} requests a minute",
            retry_after=math.ceil(retry_after),
        )

    async def _note_used(self, key: ApiKey, now: datetime) -> None:
        """Write ``last_used_at`` at most once per ``LAST_USED_RESOLUTION``."""
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            await self.keys.touch(key.id, now)

    async def _find(self, key_id: object) -> ApiKey | None:
        try:
            parsed = key_id if isinstance(key_id, UUID) else UUID(str(key_id))
        except ValueError:
            return None
        key = await self.keys.get(parsed)
        return key if key is not None and key.revoked_at is None else None

    async def _revoke(self, key: ApiKey, client: Client) -> ApiKey:
        async with self.uow.atomic():
            revoked = await self.keys.revoke(key.id, self.clock.now())
            if revoked is None:
                raise NotFound("no such API key")
            await self._record(ActivityKind.API_KEY_REVOKED, revoked, client)
        return revoked

    async def _record(self, kind: ActivityKind, key: ApiKey, client: Client) -> None:
        if self.activity is None or self.users is None:
            return
        user = await self.users.get(key.user_id)
        if user is not None:
            await self.activity.record(kind, client=client, user=user)
