"""engage_core: the domain of engage-suite, free of I/O.

Entities, value objects, ports and use cases. Bring your own adapters (or the
public in-memory fakes of ``engage_adapters.memory``) and call the services::

    from engage_core import AuthService, MetricsService
"""

from engage_core.errors import (
    Conflict,
    EngageError,
    FieldError,
    Forbidden,
    IdempotencyKeyReused,
    NotFound,
    RateLimited,
    RequestInProgress,
    Unauthorized,
    ValidationFailed,
)
from engage_core.model import (
    Email,
    EngagementMetric,
    MetricDraft,
    MetricType,
    MetricValue,
    Password,
    Session,
    Timestamp,
    User,
)
from engage_core.ports import (
    AccessClaims,
    Cache,
    Clock,
    IdempotencyStore,
    MetricRepository,
    PasswordHasher,
    RateDecision,
    RateLimiter,
    Reservation,
    SessionRepository,
    StoredResponse,
    TokenIssuer,
    UserRepository,
)
from engage_core.queries import (
    Bucket,
    CursorCodec,
    MetricPage,
    MetricPageQuery,
    Point,
    Position,
    Series,
    Summary,
    SummaryQuery,
)
from engage_core.services.auth import (
    AccessGrant,
    AuthPolicy,
    AuthService,
    BrowserLogin,
    LogoutScope,
    Principal,
)
from engage_core.services.idempotency import IdempotencyGuard
from engage_core.services.metrics import MetricsService

__all__ = [
    "AccessClaims",
    "AccessGrant",
    "AuthPolicy",
    "AuthService",
    "BrowserLogin",
    "Bucket",
    "Cache",
    "Clock",
    "Conflict",
    "CursorCodec",
    "Email",
    "EngageError",
    "EngagementMetric",
    "FieldError",
    "Forbidden",
    "IdempotencyGuard",
    "IdempotencyKeyReused",
    "IdempotencyStore",
    "LogoutScope",
    "MetricDraft",
    "MetricPage",
    "MetricPageQuery",
    "MetricRepository",
    "MetricType",
    "MetricValue",
    "MetricsService",
    "NotFound",
    "Password",
    "PasswordHasher",
    "Point",
    "Position",
    "Principal",
    "RateDecision",
    "RateLimited",
    "RateLimiter",
    "RequestInProgress",
    "Reservation",
    "Series",
    "Session",
    "SessionRepository",
    "StoredResponse",
    "Summary",
    "SummaryQuery",
    "Timestamp",
    "TokenIssuer",
    "Unauthorized",
    "User",
    "UserRepository",
    "ValidationFailed",
]
