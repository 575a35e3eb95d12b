"""The one place where errors become RFC 9457 problem details.

Every error leaves as ``application/problem+json`` with ``type``, ``title``,
``status`` and ``detail``; validation problems add ``errors``, a list of
``{field, message}``. A database that cannot be reached is a 503 with
``Retry-After``, whatever the request was doing, and the log says so once per
outage (``OutageReport``), not once per request. A body that ends early is a
400, or a 499 when its client hung up (``bodies.py``). Nothing unexpected leaks: an
unhandled exception is logged with its traceback and answered with a bare 500
problem.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from engage_adapters.bootstrap import GaveWay, unavailable_from, unknown_user_from
from engage_core.errors import (
    ChallengeEnded,
    Conflict,
    EmailNotVerified,
    EngageError,
    Forbidden,
    IdempotencyKeyReused,
    InvalidToken,
    NotFound,
    RateLimited,
    RequestInProgress,
    Unauthorized,
    Unavailable,
    UnknownUser,
    ValidationFailed,
)
from engage_http import bodies, head

log = logging.getLogger("engage.http")
TYPE_PREFIX = "urn:engage-suite:problem:"
MEDIA_TYPE = "application/problem+json"


class BadQuery(ValidationFailed):
    """A query parameter is at fault: 400, not 422 (the body was fine)."""


class BadPath(ValidationFailed):
    """A path parameter is no value the route can name (a session id that is no
    UUID): 400, as for a query."""


# exception type -> (status, problem type, title)
_DOMAIN: list[tuple[type[EngageError], int, str, str]] = [
    (BadQuery, 400, "invalid-query", "Invalid query parameters"),
    (BadPath, 400, "invalid-path", "Invalid path parameter"),
    (InvalidToken, 400, "invalid-token", "Invalid or expired link"),
    (ValidationFailed, 422, "validation-failed", "Validation failed"),
    # Trying another code is no use: the login starts over.
    (ChallengeEnded, 401, "challenge-ended", "Log in again"),
    (Unauthorized, 401, "unauthorized", "Authentication required"),
    # A signed-in caller's account deleted while its request ran: its session is gone.
    (UnknownUser, 401, "unauthorized", "Authentication required"),
    (Forbidden, 403, "forbidden", "Forbidden"),
    (EmailNotVerified, 403, "email-not-verified", "Email address not verified"),
    (NotFound, 404, "not-found", "Not found"),
    (Conflict, 409, "conflict", "Conflict"),
    (RequestInProgress, 409, "request-in-progress", "Request in progress"),
    (IdempotencyKeyReused, 422, "idempotency-key-reused", "Idempotency key reused"),
    (RateLimited, 429, "rate-limited", "Too many requests"),
    (Unavailable, 503, "unavailable", "Service unavailable"),
]

_HTTP_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=status,
        type_=TYPE_PREFIX + kind,
        title=title,
        detail=detail,
        headers=headers,
        extra=extra,
    )


def _errors(exc: ValidationFailed) -> dict[str, Any]:
    return {"errors": [{"field": e.field, "message": e.message} for e in exc.errors]}


def from_domain(exc: EngageError) -> ProblemDetailsException:
    status, kind, title = next(
        ((s, k, t) for kind_of, s, k, t in _DOMAIN if isinstance(exc, kind_of)),
        (400, "bad-request", "Bad request"),
    )
    headers: dict[str, str] = {}
    extra: dict[str, Any] | None = None
    if isinstance(exc, ValidationFailed):
        extra = _errors(exc)
    if isinstance(exc, Unauthorized | UnknownUser):
        headers["WWW-Authenticate"] = 'Bearer realm="engage"'
    if isinstance(exc, RateLimited | Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    return problem(status, kind, title, exc.detail, headers=headers or None, extra=extra)


def from_http(exc: HTTPException) -> ProblemDetailsException:
    if isinstance(exc, ProblemDetailsException):
        return exc
    status = exc.status_code
    kind, title = _HTTP_TITLES.get(status, ("http-error", "HTTP error"))
    extra: dict[str, Any] | None = None
    detail = exc.detail if exc.detail and exc.detail != title else title
    if isinstance(exc, ValidationException):
        errors = _client_errors(exc.extra)
        if _in_body(exc.extra):
            # A body of the wrong shape is as invalid as one with bad values: the same 422.
            status, kind, title = 422, "validation-failed", "Validation failed"
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        extra = {"errors": errors}
    if status >= 500:
        detail = "something went wrong on our side"
    return problem(status, kind, title, detail, headers=exc.headers, extra=extra)


# msgspec names the object, not the field, when a field is missing or unknown.
_OBJECT_FIELD = re.compile(r"Object (?:missing required|contains unknown) field `([^`]*)`")
_INDEX = re.compile(r"\[(\d+)\]")


def _in_body(raw: object) -> bool:
    return isinstance(raw, list) and any(
        isinstance(item, Mapping) and item.get("source") == "body" for item in raw
    )


def _client_errors(raw: object) -> list[dict[str, str]]:
    errors = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, Mapping):
            field = str(item.get("key", ""))
            message = str(item.get("message", "invalid"))
            if item.get("source") == "body":
                # One spelling of a path for every error: items.3.metric_value.
                field = _INDEX.sub(r".\1", field)
                if named := _OBJECT_FIELD.match(message):
                    parent = "" if field == "data" else field
                    field = f"{parent}.{named[1]}" if parent else named[1]
                elif field == "data":  # Litestar's name for the body as a whole
                    field = "body"
                    if message == "'data'":  # no body at all
                        message = "a JSON object is required"
            errors.append({"field": field, "message": message})
    return errors or [{"field": "", "message": "the request is not valid"}]


# how a body ended early -> (status, problem type, title, detail)
_CUT_SHORT: dict[bodies.CutShort, tuple[int, str, str, str]] = {
    "malformed": (400, "bad-request", "Bad request", "the body's chunked framing is malformed"),
    "client-gone": (
        bodies.CLIENT_CLOSED_REQUEST,
        "client-closed-request",
        "Client closed request",
        "the connection closed before the whole body came",
    ),
}


# How long a process must answer no request with an outage's 503 before it says
# the outage is over (a later one is a new outage, logged again).
OUTAGE_QUIET = 10.0


class OutageReport:
    """The log of one app's database outages: one warning when it first answers a
    request with a 503 for one, and one once it has answered none for
    ``OUTAGE_QUIET`` seconds, saying how many it answered meanwhile; nothing for
    the requests in between, however many."""

    def __init__(self) -> None:
        self._started: float | None = None
        self._last = 0.0
        self._answered = 0

    def answered(self, reason: str) -> None:
        """A request was answered with a 503 because the database is unreachable."""
        now = time.monotonic()
        self._last = now
        self._answered += 1
        if self._started is not None:
            return
        self._started, self._answered = now, 1
        log.warning(
            "http.database_unreachable reason=%r: requests that need it get 503 until it"
            " answers again",
            reason,
        )
        # Not in the request's context: the closing line is no one request's.
        asyncio.get_running_loop().call_later(
            OUTAGE_QUIET, self._over_yet, context=contextvars.Context()
        )

    def _over_yet(self) -> None:
        if self._started is None:
            return
        quiet_for = time.monotonic() - self._last
        if quiet_for < OUTAGE_QUIET:
            asyncio.get_running_loop().call_later(
                OUTAGE_QUIET - quiet_for, self._over_yet, context=contextvars.Context()
            )
            return
        log.warning(
            "http.database_unreachable_over: %d requests got 503 in %.1f s, none in the last %g s",
            self._answered,
            self._last - self._started,
            OUTAGE_QUIET,
        )
        self._started = None


def render(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The exception handler for everything: map, then render with Litestar's problem details."""
    if (how := bodies.cut_short(request.scope)) is not None:
        # Whatever reading the body raised (Litestar: a 500), it is the body's end that failed.
        details = problem(*_CUT_SHORT[how])
    elif isinstance(exc, EngageError):
        details = from_domain(exc)
    elif isinstance(exc, HTTPException):
        details = from_http(exc)
    elif (gone := unknown_user_from(exc)) is not None:
        details = from_domain(gone)
    elif (outage := unavailable_from(exc)) is not None:
        # An outage is expected to happen, not a bug: no traceback, and one line
        # for all the requests it fails.
        report = request.app.state.get("outages")
        if isinstance(outage, GaveWay) or not isinstance(report, OutageReport):
            # A transaction rolled back for a concurrent one: no outage, and rare.
            log.warning("http.database_gave_way reason=%r", outage.reason)
        else:
            report.answered(outage.reason)
        details = from_domain(outage)
    else:
        log.exception("http.unhandled_error", extra={"path": request.url.path})
        details = problem(
            HTTP_500_INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal server error",
            "something went wrong on our side",
        )
    response = details.to_response(request)
    if response.status_code == 405:
        # One Allow header: Litestar's router names it "allow", so replace that one.
        named = [key for key in response.headers if key.lower() == "allow"]
        methods = [method for key in named for method in response.headers.pop(key).split(",")]
        if methods:
            response.headers["Allow"] = ", ".join(head.with_head(methods, request.url.path))
    return response


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    Exception: render,
    HTTPException: render,
    EngageError: render,
}
