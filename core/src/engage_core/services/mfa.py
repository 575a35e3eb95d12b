"""The second factor: TOTP (RFC 6238) with single-use recovery codes.

Set-up hands out a secret that is on only once a correct code confirms it.
A code is accepted within one step (30 s) of the clock either way, and once
only: the step it belongs to is recorded, and no code of that step or an
earlier one is accepted again. Recovery codes are random, shown once and
stored as hashes. With the second factor on, a correct password opens a
challenge (5 minutes, 5 codes) instead of a session; a code completes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import attrs
from attrs import define, frozen

from engage_core.errors import (
    ChallengeEnded,
    Conflict,
    Forbidden,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from engage_core.model import (
    OPERATOR,
    ActivityKind,
    Client,
    LoginPurpose,
    MfaChallenge,
    TotpFactor,
    User,
)
from engage_core.ports import (
    Clock,
    OneTimePasswords,
    SecondFactorRepository,
    SecretBox,
    UnitOfWork,
)
from engage_core.services.activity import ActivityLog

__all__ = [
    "MAX_CODE_LENGTH",
    "STEP_SECONDS",
    "MfaPolicy",
    "MfaRequired",
    "MfaService",
    "TotpEnrolment",
    "TotpVerifier",
    "challenge_hash",
    "matching_step",
    "new_recovery_codes",
    "recovery_code_hash",
    "step_at",
]

if TYPE_CHECKING:
    # services.auth imports this module (for the verifier); MfaService only calls it.
    from engage_core.services.auth import AccessGrant, AuthService, BrowserLogin, Principal

STEP_SECONDS = 30
_TOTP_CODE = re.compile(r"[0-9]{6}", re.ASCII)
# 16 base32 characters (80 random bits), written in groups of four: xxxx-xxxx-xxxx-xxxx.
_RECOVERY_CODE = re.compile(r"[a-z2-7]{16}", re.ASCII)
MAX_CODE_LENGTH = 64


@frozen(kw_only=True)
class MfaPolicy:
    issuer: str = "engage-suite"
    challenge_ttl: timedelta = timedelta(minutes=5)
    challenge_attempts: int = 5
    skew_steps: int = 1
    recovery_codes: int = 10


@frozen(kw_only=True)
class TotpEnrolment:
    """What set-up shows the user once: the secret, as text, URI and QR code."""

    secret: str = attrs.field(repr=False)
    otpauth_uri: str = attrs.field(repr=False)
    qr_svg: str = attrs.field(repr=False)


@frozen(kw_only=True)
class MfaRequired:
    """A login whose password was right: it goes on with ``challenge`` and a code."""

    challenge: str = attrs.field(repr=False)
    expires_at: datetime


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def matching_step(
    code: str,
    *,
    current_step: int,
    last_step: int | None,
    skew: int,
    code_for: Callable[[int], str],
) -> int | None:
    """The step within ``skew`` of ``current_step`` whose code is ``code`` and
    that is newer than ``last_step`` (a step used already, or one before it, is
    refused: that is what makes a code single-use); None when there is none."""
    for step in range(current_step + skew, current_step - skew - 1, -1):
        if last_step is not None and step <= last_step:
            break
        if hmac.compare_digest(code_for(step).encode(), code.encode()):
            return step
    return None


def new_recovery_codes(count: int) -> list[str]:
    codes = []
    for _ in range(count):
        text = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()
        codes.append("-".join(text[i : i + 4] for i in range(0, 16, 4)))
    return codes


def recovery_code_hash(code: str) -> str | None:
    """The stored form of a recovery code as typed (any case, with or without
    dashes and spaces); None for what cannot be one. The codes carry 80 random
    bits, so a fast hash is enough."""
    normal = re.sub(r"[\s-]", "", code).lower()
    if not _RECOVERY_CODE.fullmatch(normal):
        return None
    return hashlib.sha256(normal.encode("ascii")).hexdigest()


def challenge_hash(challenge: str) -> str:
    return hashlib.sha256(challenge.encode("utf-8")).hexdigest()


def _code_text(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationFailed.single("code", "must be a 6-digit code or a recovery code")
    if len(raw) > MAX_CODE_LENGTH:
        raise ValidationFailed.single("code", f"must be at most {MAX_CODE_LENGTH} characters")
    # Apps show a code as "123 456": the spaces are not part of it. A phone keyboard
    # may type them in another script (Arabic-Indic, full-width): the same digits.
    return "".join(_ascii_digit(c) for c in re.sub(r"\s+", "", raw))


def _ascii_digit(char: str) -> str:
    """Any Unicode decimal digit as its ASCII digit; any other character as it is."""
    value = unicodedata.decimal(char, None)
    return char if value is None else str(value)


@define
class TotpVerifier:
    """The rules of the second factor over its store: what login and the account
    pages share."""

    factors: SecondFactorRepository
    codes: OneTimePasswords
    box: SecretBox
    clock: Clock
    activity: ActivityLog
    policy: MfaPolicy = MfaPolicy()

    async def is_on(self, user_id: UUID) -> bool:
        factor = await self.factors.get(user_id)
        return factor is not None and factor.enabled

    async def open_challenge(
        self, user: User, purpose: LoginPurpose, client: Client
    ) -> MfaRequired:
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        challenge = MfaChallenge(
            token_hash=challenge_hash(token),
            user_id=user.id,
            purpose=purpose,
            client=client,
            created_at=now,
            expires_at=now + self.policy.challenge_ttl,
        )
        await self.factors.add_challenge(challenge)
        return MfaRequired(challenge=token, expires_at=challenge.expires_at)

    async def take_attempt(self, challenge: object) -> MfaChallenge:
        """The live challenge, counting one attempt on it; ``ChallengeEnded`` when it
        is unknown, expired or out of attempts."""
        if not isinstance(challenge, str) or not 0 < len(challenge) <= 256:
            raise ChallengeEnded(reason="no challenge")
        found = await self.factors.attempt_challenge(
            challenge_hash(challenge),
            self.clock.now(),
            max_attempts=self.policy.challenge_attempts,
        )
        if found is None:
            raise ChallengeEnded()
        return found

    async def accept(self, user: User, code: object, client: Client) -> bool:
        """Whether ``code`` is a current TOTP code or an unused recovery code of the
        user's second factor (spending it if so)."""
        text = _code_text(code)
        factor = await self.factors.get(user.id)
        if factor is None or not factor.enabled:
            return False
        if _TOTP_CODE.fullmatch(text):
            step = self.step_of(factor, text)
            return step is not None and await self.factors.use_step(user.id, step)
        code_hash = recovery_code_hash(text)
        if code_hash is None:
            return False
        if not await self.factors.use_recovery_code(user.id, code_hash, self.clock.now()):
            return False
        await self.activity.record(ActivityKind.MFA_RECOVERY_USED, user=user, client=client)
        return True

    async def end_challenges_of(self, user_id: UUID) -> None:
        """The user's logins that wait for a code end: each was opened on a password
        that is no longer the account's."""
        await self.factors.end_challenges_of(user_id)

    async def purge_expired_challenges(self) -> int:
        return await self.factors.purge_challenges(self.clock.now())

    def step_of(self, factor: TotpFactor, code: str) -> int | None:
        """The unused step within the allowed skew whose code this is, if any."""
        try:
            secret = self.box.open(factor.sealed_secret)
        except Unavailable:
            raise
        except ValueError as exc:  # no key opens it: the operator must list the key again
            raise Unavailable(
                "the second factor cannot be checked now",
                retry_after=60,
                reason=f"no encryption key opens the second-factor secret of user {factor.user_id}",
            ) from exc
        return matching_step(
            code,
            current_step=step_at(self.clock.now()),
            last_step=factor.last_step,
            skew=self.policy.skew_steps,
            code_for=lambda step: self.codes.code(secret, step),
        )


@define
class MfaService:
    """Set up, confirm, disable and regenerate the second factor, reset it for an
    operator, and finish a login that waits for it."""

    verifier: TotpVerifier
    auth: AuthService
    uow: UnitOfWork

    @property
    def factors(self) -> SecondFactorRepository:
        return self.verifier.factors

    @property
    def activity(self) -> ActivityLog:
        return self.verifier.activity

    async def status(self, principal: Principal) -> tuple[bool, int]:
        """Whether the caller's second factor is on, and how many recovery codes remain."""
        factor = await self.factors.get(principal.user_id)
        if factor is None or not factor.enabled:
            return False, 0
        return True, await self.factors.unused_recovery_codes(principal.user_id)

    async def begin_totp(self, principal: Principal) -> TotpEnrolment:
        """A new secret for the caller, not on until confirmed. ``Conflict`` when the
        second factor is on already."""
        user = await self.auth.me(principal)
        codes = self.verifier.codes
        secret = codes.new_secret()
        factor = TotpFactor(
            user_id=user.id,
            sealed_secret=self.verifier.box.seal(secret),
            created_at=self.verifier.clock.now(),
        )
        if not await self.factors.begin(factor):
            raise Conflict("the second factor is on already; disable it to set it up again")
        uri = codes.provisioning_uri(
            secret, account=user.email.value, issuer=self.verifier.policy.issuer
        )
        return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=codes.qr_svg(uri))

    async def confirm_totp(self, principal: Principal, code: object, client: Client) -> list[str]:
        """Turn the set-up on with a correct code; the recovery codes, shown this once."""
        text = _code_text(code)
        user = await self.auth.me(principal)
        factor = await self.factors.get(user.id)
        if factor is None or factor.enabled:
            raise Conflict("no second factor waits for confirmation; set one up first")
        step = self.verifier.step_of(factor, text) if _TOTP_CODE.fullmatch(text) else None
        if step is None:  # a well-formed code, refused as disable refuses a wrong one
            raise Forbidden("the code is not the current one")
        recovery = new_recovery_codes(self.verifier.policy.recovery_codes)
        async with self.uow.atomic():
            if not await self.factors.enable(
                user.id,
                self.verifier.clock.now(),
                step=step,
                recovery_code_hashes=[_hash(c) for c in recovery],
            ):
                raise Conflict("no second factor waits for confirmation; set one up first")
            await self.activity.record(ActivityKind.MFA_ENABLED, user=user, client=client)
        return recovery

    async def disable(
        self, principal: Principal, *, password: object, code: object, client: Client
    ) -> None:
        """Turn the second factor off, given the password and a code."""
        user = await self._confirmed(principal, password, code, client)
        async with self.uow.atomic():
            await self.factors.remove(user.id)
            await self.activity.record(ActivityKind.MFA_DISABLED, user=user, client=client)

    async def regenerate_recovery_codes(
        self, principal: Principal, *, password: object, code: object, client: Client
    ) -> list[str]:
        """New recovery codes, given the password and a code; the old ones stop working."""
        user = await self._confirmed(principal, password, code, client)
        recovery = new_recovery_codes(self.verifier.policy.recovery_codes)
        async with self.uow.atomic():
            await self.factors.replace_recovery_codes(user.id, [_hash(c) for c in recovery])
            await self.activity.record(ActivityKind.MFA_RECOVERY_CODES, user=user, client=client)
        return recovery

    async def reset(self, user: User) -> bool:
        """The operator's reset, after an identity check done elsewhere: the second
        factor is off. False when it was not set up."""
        async with self.uow.atomic():
            removed = await self.factors.remove(user.id)
            if removed:
                await self.activity.record(ActivityKind.MFA_RESET, user=user, client=OPERATOR)
        return removed

    async def verify_login(
        self, *, challenge: object, code: object, client: Client
    ) -> BrowserLogin | AccessGrant:
        """Finish a login that waits for its second factor: the session (cookies or a
        token, as the login asked) once the code is right. A wrong code counts as a
        failed login for the account's email."""
        text = _code_text(code)
        pending = await self.verifier.take_attempt(challenge)
        user = await self.auth.users.get(pending.user_id)
        if user is None:
            raise ChallengeEnded(reason="user gone")
        await self.auth.check_not_locked(user.email, client)
        if not await self.verifier.accept(user, text, client):
            await self.auth.count_failed_login(user.email)
            await self.activity.record(ActivityKind.LOGIN_FAILED, user=user, client=client)
            raise Unauthorized("invalid code", reason="bad second factor")
        if not await self.factors.end_challenge(pending.token_hash):
            raise ChallengeEnded(reason="raced")
        if pending.purpose is LoginPurpose.TOKEN:
            return await self.auth.start_token_session(user, client)
        return await self.auth.start_browser_session(user, client)

    async def _confirmed(
        self, principal: Principal, password: object, code: object, client: Client
    ) -> User:
        _code_text(code)
        # One answer for a wrong password and a wrong code: which one was right is
        # what someone holding a stolen session would like to learn.
        wrong = Forbidden("the password or the code is not correct")
        try:
            user = await self.auth.confirm_password(principal, password)
        except Forbidden:
            raise wrong from None
        if not await self.verifier.is_on(user.id):
            raise Conflict("the second factor is not on")
        if not await self.verifier.accept(user, code, client):
            await self.auth.count_failed_login(user.email)
            raise wrong
        return user


def _hash(code: str) -> str:
    code_hash = recovery_code_hash(code)
    assert code_hash is not None  # made by new_recovery_codes
    return code_hash
