"""Entities and value objects.

Value objects validate on construction: once you hold an ``Email`` or a
``MetricValue`` it is valid, and no other layer checks it again.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from uuid import UUID

import email_validator
from attrs import define, field, frozen

from engage_core.errors import FieldError, ValidationFailed

__all__ = [
    "EARLIEST_RECORDED_AT",
    "KEY_PREFIX",
    "MAX_EMAIL_LENGTH",
    "MAX_FUTURE_SKEW",
    "MAX_IP_LENGTH",
    "MAX_METRIC_TYPE_LENGTH",
    "MAX_METRIC_VALUE_DECIMALS",
    "MAX_NUMERIC_STRING_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "MAX_USER_AGENT_LENGTH",
    "METRIC_VALUE_BOUND",
    "MIN_PASSWORD_LENGTH",
    "NUMERIC_STRING_PATTERN",
    "OPERATOR",
    "UNKNOWN_CLIENT",
    "ActivityEntry",
    "ActivityKind",
    "ApiKey",
    "ApiKeyScope",
    "Client",
    "DeviceSession",
    "Email",
    "EngagementMetric",
    "Grant",
    "GrantId",
    "GrantKind",
    "LoginPurpose",
    "MetricDraft",
    "MetricType",
    "MetricValue",
    "MfaChallenge",
    "OneTimeToken",
    "OwnedApiKey",
    "Password",
    "Session",
    "Timestamp",
    "TokenPurpose",
    "TotpFactor",
    "User",
    "parse_iso_date_time",
    "parse_metric_value",
    "parse_timestamp",
]

MAX_EMAIL_LENGTH = 254
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
MAX_METRIC_TYPE_LENGTH = 100
METRIC_VALUE_BOUND = Decimal(10) ** 15
# Far more than any float needs (5e-324 has 324), far less than PostgreSQL stores (16383).
MAX_METRIC_VALUE_DECIMALS = 1000
MAX_FUTURE_SKEW = timedelta(minutes=5)
EARLIEST_RECORDED_AT = datetime(1970, 1, 1, tzinfo=UTC)

_METRIC_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*", re.ASCII)
# A numeric string: sign, digits, fraction, exponent; nothing else (no "_", no spaces).
NUMERIC_STRING_PATTERN = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,4})?"
MAX_NUMERIC_STRING_LENGTH = 64
_NUMERIC_STRING = re.compile(NUMERIC_STRING_PATTERN, re.ASCII)
# The common spelling ("42", "-3.25"): at most 15 integer digits, so below 10^15,
# and at most 64 characters, so within the limits checked for the general case.
_PLAIN_DECIMAL = re.compile(r"-?\d{1,15}(\.\d{0,47})?", re.ASCII)
_ZERO = Decimal(0)
_INT_BOUND = 10**15
# An ISO 8601 date-time as ``datetime.fromisoformat`` reads it: a calendar or week
# date (extended or basic), "T" (or a space, as RFC 3339 allows) and a time whose
# seconds may carry a fraction, then "Z" or an offset of hours and minutes (and
# whole seconds, as Python's isoformat writes a zone's old local mean time); any
# letter in either case. Nothing else: that parser takes any character between the
# date and the time, and stray characters before the offset ("00:00:00xZ").
_ISO_DATE_TIME = re.compile(
    r"\d{4}(?:-\d{2}-\d{2}|\d{4}|-?[Ww]\d{2}(?:-?[1-7])?)"
    r"(?:[Tt ]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?)?"
    r"(?:[Zz]|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?",
    re.ASCII,
)

# The offset that ends a date-time that has a time (its sign follows the time's digits).
_OFFSET = re.compile(r"[Tt ][0-9:.,]+[+-](?P<hours>\d{2}):?(?P<minutes>\d{2})?", re.ASCII)


def _encodable(text: str) -> bool:
    """True when ``text`` is valid Unicode (JSON can smuggle in lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _require_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValidationFailed.single(name, "must be a string")
    return value


def _normalise_email(raw: object) -> str:
    text = _require_str(raw, "email")
    if not text.strip():
        raise ValidationFailed.single("email", "must not be empty")
    if not _encodable(text):
        raise ValidationFailed.single("email", "is not valid Unicode")
    if len(text) > MAX_EMAIL_LENGTH:
        raise ValidationFailed.single("email", f"must be at most {MAX_EMAIL_LENGTH} characters")
    try:
        checked = email_validator.validate_email(text, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValidationFailed.single("email", f"is not a valid address: {exc}") from None
    normalised: str = checked.normalized
    if len(normalised) > MAX_EMAIL_LENGTH:
        raise ValidationFailed.single("email", f"must be at most {MAX_EMAIL_LENGTH} characters")
    return normalised


def _email_key(value: str) -> str:
    return value.lower()


@frozen
class Email:
    """A syntactically valid address with its domain lower-cased.

    Two emails are equal when they differ only in letter case.
    """

    value: str = field(converter=_normalise_email, eq=_email_key)

    @property
    def canonical(self) -> str:
        """The case-folded form that uniqueness and look-ups use."""
        return _email_key(self.value)

    def __str__(self) -> str:
        return self.value


def _check_password(raw: object) -> str:
    text = _require_str(raw, "password")
    if not _encodable(text):
        raise ValidationFailed.single("password", "is not valid Unicode")
    if not MIN_PASSWORD_LENGTH <= len(text) <= MAX_PASSWORD_LENGTH:
        raise ValidationFailed.single(
            "password",
            f"must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long",
        )
    return text


@frozen
class Password:
    """A plain-text password of 8 to 256 characters. Never printed."""

    value: str = field(converter=_check_password, repr=False)

    def __str__(self) -> str:
        return "********"


def _check_metric_type(raw: object) -> str:
    text = _require_str(raw, "metric_type")
    if not 1 <= len(text) <= MAX_METRIC_TYPE_LENGTH:
        raise ValidationFailed.single(
            "metric_type", f"must be 1 to {MAX_METRIC_TYPE_LENGTH} characters long"
        )
    if not _METRIC_TYPE.fullmatch(text):
        raise ValidationFailed.single(
            "metric_type",
            "may hold only letters, digits and _ . : - and must start with a letter or digit",
        )
    return text


@frozen(order=True)
class MetricType:
    """What is measured: ``page_view``, ``video.play``, ``api:call-1``."""

    value: str = field(converter=_check_metric_type)

    def __str__(self) -> str:
        return self.value


def parse_metric_value(raw: object) -> Decimal:
    """The number a metric value holds (what ``MetricValue`` keeps), or
    ``ValidationFailed`` on ``metric_value``: for callers that check many values
    at once (a backfill checks millions) without building a ``MetricValue`` each."""
    # Fast paths with the general case's result for the common spellings ("42",
    # "-3.25", 42, 0.25): trailing fraction zeros dropped (exactly), and every zero
    # the plain 0.
    if type(raw) is str:
        number = _plain_decimal(raw)
        if number is not None:
            return number
    elif type(raw) is float:
        number = _plain_decimal(repr(raw))  # the general case's spelling, below
        if number is not None:
            return number
    elif type(raw) is int:
        if -_INT_BOUND < raw < _INT_BOUND:
            return Decimal(raw) if raw else _ZERO
    elif type(raw) is Decimal:
        # Spelled so with no trailing fraction zero, it is in that form already.
        text = str(raw)
        if _PLAIN_DECIMAL.fullmatch(text) and not (text[-1] == "0" and "." in text):
            return raw if raw else _ZERO
    # bool is an int subclass; True is not a measurement.
    if isinstance(raw, bool):
        raise ValidationFailed.single("metric_value", "must be a number, not a boolean")
    if isinstance(raw, Decimal):
        number = raw
    elif isinstance(raw, int):
        number = Decimal(raw)
    elif isinstance(raw, float):
        # repr gives the shortest string that round-trips: 0.1 stays 0.1.
        number = Decimal(repr(raw))
    elif isinstance(raw, str):
        # The pattern, not Decimal(), decides: Decimal() also takes "1_000", " 1 " and "١٢".
        if len(raw) > MAX_NUMERIC_STRING_LENGTH or not _NUMERIC_STRING.fullmatch(raw):
            raise ValidationFailed.single("metric_value", "must be a number or a numeric string")
        try:
            number = Decimal(raw)
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            raise ValidationFailed.single("metric_value", "must be a number") from None
    else:
        raise ValidationFailed.single("metric_value", "must be a number or a numeric string")
    if not number.is_finite():
        raise ValidationFailed.single("metric_value", "must be finite")
    if number.copy_abs() >= METRIC_VALUE_BOUND:
        raise ValidationFailed.single("metric_value", "must be less than 10^15 in magnitude")
    return _strip_trailing_zeros(number)


def _plain_decimal(text: str) -> Decimal | None:
    """The value of a plain spelling (``-3.250``), or ``None`` for any other."""
    plain = _PLAIN_DECIMAL.fullmatch(text)
    if plain is None:
        return None
    number = Decimal(text.rstrip("0").rstrip(".") if plain.group(1) else text)
    return number if number else _ZERO


def _strip_trailing_zeros(number: Decimal) -> Decimal:
    """``1.50`` → ``1.5``, ``1E+2`` → ``100``; exact, unlike ``Decimal.normalize``."""
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite, checked by the caller
    if not any(digits):
        return Decimal(0)
    kept = list(digits)
    while exponent < 0 and len(kept) > 1 and kept[-1] == 0:
        kept.pop()
        exponent += 1
    if -exponent > MAX_METRIC_VALUE_DECIMALS:
        raise ValidationFailed.single(
            "metric_value", f"may have at most {MAX_METRIC_VALUE_DECIMALS} decimal places"
        )
    if exponent > 0:
        kept.extend([0] * exponent)
        exponent = 0
    return Decimal((sign, tuple(kept), exponent))


@frozen(order=True)
class MetricValue:
    """A finite number below 10^15 in magnitude, held exactly as a Decimal."""

    value: Decimal = field(converter=parse_metric_value)

    def __str__(self) -> str:
        return str(self.value)


def parse_iso_date_time(text: str, name: str) -> datetime:
    """The date-time ISO 8601 ``text`` spells (naive when it has no offset), or
    ``ValidationFailed`` on ``name``."""
    if _ISO_DATE_TIME.fullmatch(text) is None:
        raise ValidationFailed.single(name, "must be an ISO 8601 date-time with a UTC offset")
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError:  # a 13th month, a 25th hour, a leap second, an offset of +25:00
        if (offset := _OFFSET.search(text)) is not None and (
            int(offset["hours"]) > 23 or int(offset["minutes"] or 0) > 59
        ):
            raise ValidationFailed.single(
                name, "must have a UTC offset between -23:59 and +23:59"
            ) from None
        raise ValidationFailed.single(
            name, "must be a date and time that exists (no 30 February, hour 24 or leap second)"
        ) from None


def parse_timestamp(raw: object) -> datetime:
    """The UTC moment ``raw`` names (what ``Timestamp`` keeps), or ``ValidationFailed``
    on ``recorded_at``; for callers that check many values at once."""
    if isinstance(raw, str):
        moment = parse_iso_date_time(raw.strip(), "recorded_at")
    elif isinstance(raw, datetime):
        moment = raw
    else:
        raise ValidationFailed.single("recorded_at", "must be an ISO 8601 date-time string")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationFailed.single(
            "recorded_at", "must carry a UTC offset (such as Z or +02:00)"
        )
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValidationFailed.single("recorded_at", "is out of range") from None
    if utc < EARLIEST_RECORDED_AT:
        raise ValidationFailed.single("recorded_at", "must not be before 1970-01-01T00:00:00Z")
    return utc


@frozen(order=True)
class Timestamp:
    """A moment in time with a known offset, held in UTC. Naive times are refused."""

    value: datetime = field(converter=parse_timestamp)

    def isoformat(self) -> str:
        return self.value.isoformat()


MAX_USER_AGENT_LENGTH = 512
MAX_IP_LENGTH = 45  # the longest textual IPv6 address with an embedded IPv4 one
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# What a user agent is kept without: C0 and C1 controls (C1's CSI, U+009B, starts a
# terminal escape as ESC [ does, in `engage activity`), and the marks that reorder
# text on a page.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]+")


def _trimmed_user_agent(raw: object) -> str | None:
    if not isinstance(raw, str) or not _encodable(raw):
        return None
    text = _UNPRINTABLE.sub(" ", raw).strip()[:MAX_USER_AGENT_LENGTH].strip()
    return text or None


def _checked_ip(raw: object) -> str | None:
    if not isinstance(raw, str) or not raw or len(raw) > MAX_IP_LENGTH or _CONTROL.search(raw):
        return None
    return raw


@frozen
class Client:
    """Where a request came from: its address and its user agent, as far as known.
    Told by the caller, so only kept (trimmed), never trusted."""

    ip: str | None = field(default=None, converter=_checked_ip)
    user_agent: str | None = field(default=None, converter=_trimmed_user_agent)


UNKNOWN_CLIENT = Client()
# What the operator's commands (`engage user ...`) record as their client.
OPERATOR = Client(user_agent="engage CLI (operator)")


# --- entities -----------------------------------------------------------------


@define(kw_only=True)
class User:
    id: UUID
    email: Email
    password_hash: str = field(repr=False)
    created_at: datetime
    updated_at: datetime
    # True once a link sent to ``email`` came back (verification, reset or email change).
    email_verified: bool = False


@frozen(kw_only=True)
class MetricDraft:
    """A measurement not stored yet."""

    metric_type: MetricType
    metric_value: MetricValue
    recorded_at: Timestamp

    @classmethod
    def parse(
        cls, *, metric_type: Any, metric_value: Any, recorded_at: Any, now: datetime
    ) -> MetricDraft:
        """Build a draft from raw input, reporting every field at fault at once.

        ``recorded_at`` may be ``None`` (meaning ``now``) and may not lie more
        than five minutes after ``now``.
        """
        moment = now if recorded_at is None else recorded_at
        latest = now + MAX_FUTURE_SKEW
        # The common case first: a good draft costs three checks (a batch parses up
        # to 1,000 of them per request).
        try:
            when = Timestamp(moment)
            if when.value <= latest:
                return cls(
                    metric_type=MetricType(metric_type),
                    metric_value=MetricValue(metric_value),
                    recorded_at=when,
                )
        except ValidationFailed:
            pass
        # Some field is at fault: check each, to word every fault at once.
        errors: list[FieldError] = []
        for factory, raw in (
            (MetricType, metric_type),
            (MetricValue, metric_value),
            (Timestamp, moment),
        ):
            try:
                checked = factory(raw)
            except ValidationFailed as exc:
                errors.extend(exc.errors)
                continue
            if isinstance(checked, Timestamp) and checked.value > latest:
                errors.append(
                    FieldError("recorded_at", "must not be more than 5 minutes in the future")
                )
        raise ValidationFailed(errors)


@frozen(kw_only=True)
class EngagementMetric:
    id: int
    user_id: UUID
    metric_type: MetricType
    metric_value: MetricValue
    recorded_at: datetime


@define(kw_only=True)
class Session:
    """One refresh-token lineage step.

    Each refresh rotates the token: the old session is ended (``rotated``) and
    a new one in the same ``family_id`` is started. ``token_hash`` is a hash of
    the refresh token; the token itself is never stored.
    """

    id: UUID
    user_id: UUID
    family_id: UUID
    token_hash: str = field(repr=False)
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None
    # The device it was started from, and when it was last used (at most once a minute).
    client: Client = field(factory=lambda: UNKNOWN_CLIENT)
    last_seen_at: datetime | None = None

    def is_live(self, now: datetime) -> bool:
        return self.ended_at is None and now < self.expires_at


@frozen(kw_only=True)
class DeviceSession:
    """A signed-in device as its user sees it: a session family, named by its id
    (which, unlike the id of its current step, survives every refresh)."""

    id: UUID
    signed_in_at: datetime
    last_seen_at: datetime
    client: Client


class TokenPurpose(enum.StrEnum):
    """What a link's one-time token allows."""

    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"
    CHANGE_EMAIL = "change_email"


@frozen(kw_only=True)
class OneTimeToken:
    """A token sent in a link, stored only as ``token_hash`` (SHA-256).

    ``email`` is the address the link went to: the one it verifies, resets the
    password of, or becomes the account's address.
    """

    token_hash: str = field(repr=False)
    purpose: TokenPurpose
    user_id: UUID
    email: Email
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None

    def is_usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at


# --- second factor and activity ---------------------------------------------------


class LoginPurpose(enum.StrEnum):
    """What a login that waits for its second factor will hand out."""

    BROWSER = "browser"  # cookies (POST /api/auth/login)
    TOKEN = "token"  # a bearer token (POST /api/auth/token)


@frozen(kw_only=True)
class TotpFactor:
    """A user's TOTP set-up: ``sealed_secret`` is the secret encrypted at rest.
    On once ``enabled_at`` is set (a correct code confirmed it)."""

    user_id: UUID
    sealed_secret: str = field(repr=False)
    created_at: datetime
    enabled_at: datetime | None = None
    # The newest 30-second step whose code was accepted: no code of it or before is again.
    last_step: int | None = None

    @property
    def enabled(self) -> bool:
        return self.enabled_at is not None


@frozen(kw_only=True)
class MfaChallenge:
    """A login whose password was right, waiting for a code; stored as a hash only."""

    token_hash: str = field(repr=False)
    user_id: UUID
    purpose: LoginPurpose
    client: Client
    created_at: datetime
    expires_at: datetime
    attempts: int = 0


class ActivityKind(enum.StrEnum):
    """What the activity log records. Never with a secret (password, token, code)."""

    SIGNUP = "signup"
    LOGIN = "login"
    LOGIN_FAILED = "login.failed"
    LOGIN_LOCKED = "login.locked"
    LOGIN_UNLOCKED = "login.unlocked"
    LOGOUT = "logout"
    REFRESH_REUSED = "refresh.reused"
    PASSWORD_CHANGED = "password.changed"
    PASSWORD_RESET = "password.reset"
    EMAIL_CHANGED = "email.changed"
    MFA_ENABLED = "mfa.enabled"
    MFA_DISABLED = "mfa.disabled"
    MFA_RESET = "mfa.reset"
    MFA_RECOVERY_CODES = "mfa.recovery_codes"
    MFA_RECOVERY_USED = "mfa.recovery_used"
    SESSION_ENDED = "session.ended"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"


@frozen(kw_only=True)
class ActivityEntry:
    """One recorded event. ``user_id`` is None for attempts on an email no account
    has; ``email`` is the address the event concerned, at the time."""

    kind: ActivityKind
    at: datetime
    user_id: UUID | None
    email: str | None
    client: Client
    id: int = 0  # given by the store


# --- API keys, and what authorises a live stream ------------------------------------

KEY_PREFIX = "engk_"  # every API key's text starts with it


class ApiKeyScope(enum.StrEnum):
    METRICS_WRITE = "metrics:write"
    METRICS_READ = "metrics:read"


@frozen(kw_only=True)
class ApiKey:
    """A scoped bearer credential of a user, stored as ``secret_hash`` (a keyed
    hash) only: ``services.api_keys`` says how a key reads and is checked."""

    id: UUID
    user_id: UUID
    name: str
    scopes: frozenset[ApiKeyScope]
    secret_hash: str = field(repr=False)
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def prefix(self) -> str:
        """The part of the key that is not secret, by which its user recognises it."""
        return f"{KEY_PREFIX}{self.id.hex}"

    def is_usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@frozen(kw_only=True)
class OwnedApiKey:
    """A key and its user's address, as an operator lists them."""

    key: ApiKey
    email: str


GrantKind = Literal["family", "key"]


@frozen
class GrantId:
    """What lets a client in: a signed-in device (its session family) or an API key."""

    kind: GrantKind
    id: UUID


@frozen
class Grant:
    """What authorised a stream, for how long; the stream ends with it."""

    id: GrantId
    user_id: UUID
    expires_at: datetime | None
