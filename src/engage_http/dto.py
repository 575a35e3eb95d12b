"""Request and response bodies (msgspec Structs: strict, fast, and they make the OpenAPI schema).

Requests refuse unknown fields and wrong JSON types; the values themselves are
checked by engage_core's value objects, so the rules live in one place.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Request
from litestar.types import Empty
from msgspec import Meta

from engage_core.model import ActivityEntry, ApiKey, DeviceSession, EngagementMetric, User
from engage_core.queries import MetricPage, Summary
from engage_core.services.account_mail import LINK_TOKEN_PATTERN
from engage_core.services.activity import ActivityPage
from engage_core.services.api_keys import IssuedApiKey
from engage_core.services.metrics import MAX_BATCH
from engage_core.services.mfa import MAX_CODE_LENGTH, MfaRequired, TotpEnrolment
from engage_http import exact_json
from engage_http.openapi import (
    EMAIL_SCHEMA,
    METRIC_TYPE_SCHEMA,
    METRIC_VALUE_SCHEMAS,
    MOMENT_SCHEMA,
    NUMBER_SCHEMA,
    PASSWORD_SCHEMA,
    documented,
)

Email = Annotated[
    str, Meta(examples=["ada@example.com"], extra_json_schema=documented(**EMAIL_SCHEMA))
]
Password = Annotated[
    str,
    Meta(description="8 to 256 characters, any", extra_json_schema=documented(**PASSWORD_SCHEMA)),
]
# Any: the raw JSON value goes to MetricValue, whose rule is the one the backfill uses
# (msgspec's Decimal would take "1_000" and " 1 " from a string first).
MetricValueIn = Annotated[
    Any,
    Meta(
        description="A JSON number (or numeric string), finite, |v| < 10^15. The string "
        "pattern is the plain form; a string may also use an exponent (1.5e3), which a "
        "pattern cannot bound, while the value stays below 10^15",
        examples=[12.5],
        extra_json_schema=documented(one_of=METRIC_VALUE_SCHEMAS),
    ),
]
Moment = Annotated[
    str,
    Meta(
        max_length=64,
        description="ISO 8601 date-time with an offset, e.g. 2026-11-25T10:00:00+01:00, "
        "from 1970 to 5 minutes from now",
        examples=["2026-11-25T10:00:00Z"],
        extra_json_schema=documented(**MOMENT_SCHEMA),
    ),
]
MetricTypeIn = Annotated[
    str, Meta(examples=["page_view"], extra_json_schema=documented(**METRIC_TYPE_SCHEMA))
]
# Decimals leave as JSON numbers (``encode``), not the strings Litestar assumes.
Number = Annotated[Decimal, Meta(extra_json_schema=documented(**NUMBER_SCHEMA))]


class _In(msgspec.Struct, forbid_unknown_fields=True):
    pass


class JsonBodyRequest(Request[Any, Any, Any]):
    """A request whose JSON body keeps its numbers exact and, however malformed, is a 400.

    Litestar decodes a body to Python objects before it converts them to the
    handler's Struct: its decoder turns 0.30000000000000000001 into the float
    0.3, and lets a deeply nested body or one that is not UTF-8 become a 500.
    """

    async def json(self) -> Any:
        state = self._connection_state
        if state.json is Empty:
            state.json = exact_json.decode(await self.body())
        return state.json


class Credentials(_In):
    email: Email
    password: Password


class PasswordChange(_In):
    current_password: Password
    new_password: Password


class PasswordConfirmation(_In):
    password: Password


Code = Annotated[
    str,
    Meta(
        description="The 6-digit code the authenticator app shows, or an unused recovery code",
        examples=["123456"],
        extra_json_schema=documented(min_length=1, max_length=MAX_CODE_LENGTH),
    ),
]


class CodeIn(_In):
    code: Code


class PasswordAndCodeIn(_In):
    password: Password
    code: Code


class MfaVerifyIn(_In):
    challenge: Annotated[
        str,
        Meta(
            description="The challenge of the login or token answer",
            extra_json_schema=documented(min_length=1, max_length=256),
        ),
    ]
    code: Code


LinkToken = Annotated[
    str,
    Meta(
        max_length=1024,
        description="The token of the link (what follows #token=); any other is invalid-token",
        # What engage issues (account_mail.link_token_hash's rule); checked there, not here,
        # so that every token engage cannot have issued gets the one invalid-token answer.
        extra_json_schema=documented(pattern=LINK_TOKEN_PATTERN),
    ),
]


class LinkTokenIn(_In):
    token: LinkToken


class ForgottenPassword(_In):
    email: Email


class PasswordReset(_In):
    token: LinkToken
    new_password: Password


class EmailChange(_In):
    new_email: Email
    password: Password


class MetricIn(_In):
    metric_type: MetricTypeIn
    metric_value: MetricValueIn
    recorded_at: Moment | None = None

    def as_mapping(self) -> dict[str, object]:
        return {
            "metric_type": self.metric_type,
            "metric_value": self.metric_value,
            "recorded_at": self.recorded_at,
        }


class MetricBatchIn(_In):
    items: Annotated[
        list[MetricIn],
        Meta(
            description="1 to 1000 metrics, stored all or none",
            extra_json_schema=documented(min_items=1, max_items=MAX_BATCH),
        ),
    ]


# --- responses -------------------------------------------------------------------


class UserOut(msgspec.Struct):
    id: UUID
    email: str
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, email=user.email.value, created_at=user.created_at)


class MeOut(msgspec.Struct):
    id: UUID
    email: str
    created_at: datetime
    email_verified: bool
    mfa_enabled: bool = False

    @classmethod
    def of(cls, user: User) -> MeOut:
        return cls(
            id=user.id,
            email=user.email.value,
            created_at=user.created_at,
            email_verified=user.email_verified,
        )


class AcceptedOut(msgspec.Struct):
    """A request taken; what it caused happens next (a mail is queued)."""

    detail: str


class LoginOut(msgspec.Struct):
    user: UserOut
    expires_at: datetime


class TokenOut(msgspec.Struct):
    access_token: str
    expires_in: int
    token_type: Literal["bearer"] = "bearer"


class MetricOut(msgspec.Struct):
    id: int
    metric_type: str
    metric_value: Number
    recorded_at: datetime

    @classmethod
    def of(cls, metric: EngagementMetric) -> MetricOut:
        return cls(
            id=metric.id,
            metric_type=metric.metric_type.value,
            metric_value=metric.metric_value.value,
            recorded_at=metric.recorded_at,
        )


class MetricPageOut(msgspec.Struct):
    items: list[MetricOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: MetricPage) -> MetricPageOut:
        return cls(items=[MetricOut.of(m) for m in page.items], next_cursor=page.next_cursor)


class BatchOut(msgspec.Struct):
    inserted: int


class MfaRequiredOut(msgspec.Struct):
    """A login or token request whose password was right, waiting for a code:
    POST /api/auth/mfa/verify with ``challenge`` (within 5 minutes, 5 codes)."""

    mfa_required: Literal[True]
    challenge: str
    expires_at: datetime

    @classmethod
    def of(cls, pending: MfaRequired) -> MfaRequiredOut:
        return cls(mfa_required=True, challenge=pending.challenge, expires_at=pending.expires_at)


class SessionOut(msgspec.Struct):
    """A signed-in device. ``id`` stays the same across refreshes."""

    id: UUID
    created_at: datetime
    last_seen_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool

    @classmethod
    def of(cls, device: DeviceSession, *, current: bool) -> SessionOut:
        return cls(
            id=device.id,
            created_at=device.signed_in_at,
            last_seen_at=device.last_seen_at,
            user_agent=device.client.user_agent,
            ip=device.client.ip,
            current=current,
        )


class SessionListOut(msgspec.Struct):
    items: list[SessionOut]


class TotpSetupOut(msgspec.Struct):
    secret: str
    otpauth_uri: str
    qr_svg: Annotated[str, Meta(description="The otpauth URI as a QR code, an SVG document")]

    @classmethod
    def of(cls, enrolment: TotpEnrolment) -> TotpSetupOut:
        return cls(
            secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg
        )


class RecoveryCodesOut(msgspec.Struct):
    recovery_codes: Annotated[
        list[str], Meta(description="Single-use codes, shown this once; each stands for a code")
    ]


class MfaStatusOut(msgspec.Struct):
    enabled: bool
    recovery_codes_left: int


class ActivityOut(msgspec.Struct):
    kind: str
    at: datetime
    ip: str | None
    user_agent: str | None

    @classmethod
    def of(cls, entry: ActivityEntry) -> ActivityOut:
        return cls(
            kind=entry.kind.value,
            at=entry.at,
            ip=entry.client.ip,
            user_agent=entry.client.user_agent,
        )


class ActivityPageOut(msgspec.Struct):
    items: list[ActivityOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: ActivityPage) -> ActivityPageOut:
        return cls(items=[ActivityOut.of(e) for e in page.items], next_cursor=page.next_cursor)


class PointOut(msgspec.Struct):
    start: datetime
    count: int
    sum: Number
    avg: Number
    min: Number
    max: Number


class SeriesOut(msgspec.Struct):
    metric_type: str
    points: list[PointOut]


class SummaryOut(msgspec.Struct):
    bucket: Literal["hour", "day", "week"]
    tz: str
    series: list[SeriesOut]

    @classmethod
    def of(cls, summary: Summary) -> SummaryOut:
        return cls(
            bucket=summary.bucket.value,
            tz=summary.tz.key,
            series=[
                SeriesOut(
                    metric_type=s.metric_type.value,
                    points=[
                        PointOut(
                            start=p.start,
                            count=p.count,
                            sum=p.sum,
                            avg=p.avg,
                            min=p.min,
                            max=p.max,
                        )
                        for p in s.points
                    ],
                )
                for s in summary.series
            ],
        )


class HealthOut(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


# Decimals go out as JSON numbers with every digit kept (not as strings, not as floats).
_encoder = msgspec.json.Encoder(decimal_format="number")


def encode(value: object) -> bytes:
    return _encoder.encode(value)


# --- API keys --------------------------------------------------------------------

ApiKeyScopeName = Literal["metrics:write", "metrics:read"]
# ApiKeyService's rule for a name: no control characters (C0, DEL, C1) or line and
# paragraph separators, and something besides spaces.
_KEY_NAME_PATTERN = (
    r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*[^\s\x00-\x1f\x7f-\x9f\u2028\u2029]"
    r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
)


class ApiKeyIn(_In):
    name: Annotated[
        str,
        Meta(
            description="What the key is for: 1 to 100 characters, not all spaces, "
            "no control characters (C0, DEL, C1) or line separators (the ends are trimmed)",
            examples=["kitchen sensor"],
            extra_json_schema={
                "extra": {"min_length": 1, "max_length": 100, "pattern": _KEY_NAME_PATTERN}
            },
        ),
    ]
    scopes: Annotated[
        list[str],
        Meta(
            description="What the key may do: record metrics, read them, or both",
            examples=[["metrics:write"]],
            extra_json_schema={
                "extra": {"min_items": 1, "items": {"enum": ["metrics:write", "metrics:read"]}}
            },
        ),
    ]
    expires_at: (
        Annotated[
            str,
            Meta(
                description="ISO 8601 date-time with an offset, in the future (before the year "
                "10000 in UTC); none: never",
                examples=["2027-01-01T00:00:00Z"],
                extra_json_schema={"extra": {"format": "date-time"}},
            ),
        ]
        | None
    ) = None


class ApiKeyOut(msgspec.Struct):
    id: UUID
    name: str
    # The key's first characters (engk_ and its id), which are not secret.
    prefix: str
    scopes: list[ApiKeyScopeName]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            scopes=sorted(scope.value for scope in key.scopes),
            created_at=key.created_at,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
        )


class CreatedApiKeyOut(msgspec.Struct):
    id: UUID
    name: str
    prefix: str
    scopes: list[ApiKeyScopeName]
    created_at: datetime
    expires_at: datetime | None
    # The whole key: shown this once, stored nowhere.
    key: Annotated[str, Meta(examples=["engk_0c9d...e1_Zm9v..."])]

    @classmethod
    def of(cls, issued: IssuedApiKey) -> CreatedApiKeyOut:
        shown = ApiKeyOut.of(issued.key)
        return cls(
            id=shown.id,
            name=shown.name,
            prefix=shown.prefix,
            scopes=shown.scopes,
            created_at=shown.created_at,
            expires_at=shown.expires_at,
            key=issued.token,
        )


class ApiKeyListOut(msgspec.Struct):
    items: list[ApiKeyOut]
