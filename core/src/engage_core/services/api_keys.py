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
from collections.abc import Callable, Sequence
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
    RateLimiter,
    UnitOfWork,
    UserRepository,
)
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
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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

    async def authenticate(self, token: str, scope: ApiKeyScope) -> KeyPrincipal:
        """The principal of a usable key that holds ``scope``: 401 for a key that is
        unknown, revoked or expired, 403 for one without the scope, 429 past its rate."""
        match = _TOKEN.fullmatch(token)
        key = await self.keys.get(UUID(match[1])) if match else None
        if key is None or not hmac.compare_digest(
            key.secret_hash, hash_api_key(self.hash_key, token)
        ):
            raise Unauthorized("invalid API key", reason="unknown api key")
        now = self.clock.now()
        if key.revoked_at is not None:
            raise Unauthorized("this API key has been revoked", reason="api key revoked")
        if not key.is_usable(now):
            raise Unauthorized("this API key has expired", reason="api key expired")
        if scope not in key.scopes:
            raise Forbidden(f"this API key does not have the {scope.value} scope")
        decision = await self.limiter.hit(
            f"api-key:{key.id}", limit=self.policy.rate_per_minute, window=RATE_WINDOW
        )
        if not decision.allowed:
            raise RateLimited(
                f"this API key is limited to {self.policy.rate_per_minute} requests a minute",
                retry_after=math.ceil(decision.retry_after),
            )
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            await self.keys.touch(key.id, now)
        return KeyPrincipal(key.user_id, key.id, key.expires_at)

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
