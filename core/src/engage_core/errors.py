"""The errors the use cases raise.

Each carries what a caller needs to render it; HTTP maps them to problem
details and the CLI to exit codes, each in one place.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import frozen

__all__ = [
    "ChallengeEnded",
    "Conflict",
    "EmailNotVerified",
    "EngageError",
    "FieldError",
    "Forbidden",
    "IdempotencyKeyReused",
    "InvalidToken",
    "NotFound",
    "RateLimited",
    "RequestInProgress",
    "Unauthorized",
    "Unavailable",
    "UnknownUser",
    "ValidationFailed",
]


class EngageError(Exception):
    """Base of every error a use case raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@frozen
class FieldError:
    """One field at fault: a dotted path (``items.3.metric_value``) and why."""

    field: str
    message: str


class ValidationFailed(EngageError):
    """Input broke a rule; ``errors`` lists every field at fault."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in self.errors))

    @classmethod
    def single(cls, field: str, message: str) -> ValidationFailed:
        return cls([FieldError(field, message)])

    def renamed(self, field: str) -> ValidationFailed:
        """The same messages, each reported against ``field`` (a value object's
        own name for itself becomes the name of the input it came from)."""
        return ValidationFailed(FieldError(field, e.message) for e in self.errors)

    def under(self, prefix: str) -> ValidationFailed:
        """The same errors with their field paths nested under ``prefix``."""
        return ValidationFailed(
            FieldError(f"{prefix}.{e.field}" if e.field else prefix, e.message) for e in self.errors
        )


class Conflict(EngageError):
    """The change clashes with what is stored (an email already taken)."""


class NotFound(EngageError):
    """The thing asked for does not exist (or is not the caller's)."""


class UnknownUser(NotFound):
    """The user a change names is not stored: it never was, or it was deleted
    while the change ran (an account deleted under its own request)."""


class Unauthorized(EngageError):
    """Credentials or token refused.

    ``detail`` is what the client sees and never says which check failed;
    ``reason`` is for logs only.
    """

    def __init__(self, detail: str = "invalid credentials", *, reason: str = "") -> None:
        super().__init__(detail)
        self.reason = reason or detail


class ChallengeEnded(Unauthorized):
    """The login's second-factor challenge cannot be answered any more: unknown,
    expired, out of attempts, or ended (the password changed, the user is gone).
    Unlike a wrong code, trying again is no use: the login starts over."""

    def __init__(self, *, reason: str = "challenge") -> None:
        super().__init__("invalid or expired challenge; log in again", reason=reason)


class RateLimited(EngageError):
    """Too many attempts; retry after ``retry_after`` whole seconds."""

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)


class Unavailable(EngageError):
    """A dependency the use case needs does not answer (the database is down):
    the request did not complete, and the same request may succeed after
    ``retry_after`` whole seconds.

    ``detail`` is what a client sees; ``reason`` (the driver's own words, which
    may name hosts) is for logs and the operator's terminal only.
    """

    def __init__(self, detail: str, *, retry_after: int, reason: str = "") -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)
        self.reason = reason or detail


class IdempotencyKeyReused(EngageError):
    """An idempotency key came back with a different request."""


class RequestInProgress(EngageError):
    """A request with the same idempotency key has not finished yet."""


class Forbidden(EngageError):
    """The caller is known but the confirmation they gave (a password) is wrong."""


class EmailNotVerified(EngageError):
    """The credentials are right, but the account's address is not verified yet
    (while ``ENGAGE_REQUIRE_VERIFIED_EMAIL`` is on)."""


class InvalidToken(EngageError):
    """A link's token that is unknown, used already or expired: one answer for all three."""
