"""Structured JSON logs with a request id, and Sentry when configured.

Logs carry key/value events (``http.request``, ``login.failed``), never a
password, token or cookie value: request logging records the method, the path
(not the query), the status and the duration, and nothing from headers.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.middleware.base import MiddlewareProtocol
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from engage_http.bodies import CLIENT_CLOSED_REQUEST
from engage_http.detached import defer
from engage_http.head import HEAD
from engage_http.headers import raw_headers, set_header

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
_GOOD_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
access_log = structlog.get_logger("engage.access")


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr, for structlog and standard-library loggers alike.

    structlog events (the access log: one per request) are rendered and written
    by structlog itself, as bytes: the standard library's records, handlers and
    formatters cost more per line (bench/README.md). Standard-library records
    get the same fields through the formatter below, and their ``extra`` ones.
    """
    global _access
    numeric_level = logging.getLevelName(level)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.JSONRenderer(serializer=_json_line)],
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # A record's ``extra={...}`` fields (a lost connection's reason) are its own.
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    handler.addFilter(RepeatedWarnings())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _access = _AccessLog(sys.stderr.buffer) if numeric_level <= logging.INFO else _NoAccessLog()


class RepeatedWarnings(logging.Filter):
    """One line a minute for each kind of warning from psycopg's pool.

    While the database is away, each worker's pool warns of every failed attempt
    to connect, several a second; the service's own outage lines say it once
    (``http.database_unreachable``). The first warning of each kind (its message
    template) is kept, then none of that kind for ``every`` seconds; the next one
    after that says how many were left out (``repeated``). Errors always pass.
    """

    LOGGER = "psycopg.pool"

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._every = every
        self._clock = clock
        self._kept: dict[str, tuple[float, int]] = {}  # template: (kept at, left out since)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or not record.name.startswith(self.LOGGER):
            return True
        now, template = self._clock(), str(record.msg)
        kept = self._kept.get(template)
        if kept is not None and now - kept[0] < self._every:
            self._kept[template] = (kept[0], kept[1] + 1)
            return False
        if kept is not None and kept[1]:
            record.repeated = kept[1]
        self._kept[template] = (now, 0)
        return True


def reset_logging() -> None:
    """Forget what ``configure_logging`` set up for the access log (for tests)."""
    global _access
    _access = None


class _AccessLog:
    """The access log's line exactly as the pipeline of ``configure_logging``
    renders it (fields in the same order, the same timestamp, the same bytes to
    the same stream), without structlog's per-call machinery, which cost about
    as much again as the line itself (bench/README.md). The request id is the
    only context the app binds, so it is the only one the line needs."""

    def __init__(self, out: BinaryIO) -> None:
        self._logger = structlog.BytesLogger(out)
        self._stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)

    def write(
        self, method: str, path: str, status: int, duration_ms: float, request_id: str
    ) -> None:
        line = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "event": "http.request",
            "request_id": request_id,
            "level": "info",
            "logger": "engage.access",
        }
        self._logger.msg(_log_encoder.encode(self._stamp(None, "info", line)))


class _NoAccessLog(_AccessLog):
    """The access log at a level above INFO."""

    def __init__(self) -> None:
        pass

    def write(
        self, method: str, path: str, status: int, duration_ms: float, request_id: str
    ) -> None:
        pass


# Set by configure_logging; until then the line goes through structlog as configured.
_access: _AccessLog | None = None


# Whatever msgspec cannot encode is logged as its repr, never an error.
_log_encoder = msgspec.json.Encoder(enc_hook=repr)


def _json_line(event: dict[str, Any], **_: Any) -> bytes:
    return _log_encoder.encode(event)


def init_sentry(dsn: str | None) -> None:
    if not dsn:
        return
    import sentry_sdk

    # No request bodies, cookies or headers: they hold passwords and tokens.
    sentry_sdk.init(dsn=dsn, send_default_pii=False, max_request_body_size="never")


class RequestIdMiddleware(MiddlewareProtocol):
    """Give every request an id (the client's X-Request-ID if sane), bind it to
    the logs, echo it in the response, and log one line per request.

    It wraps the whole app (``app.py``), so that also the requests answered
    without a route (no route for the path or method: 404, 405; a CORS
    preflight) are logged; ``unrouted(method, status, seconds)`` counts them.
    An answer of 499 (``bodies.py``: the client is gone) is logged, not sent.
    """

    def __init__(self, app: ASGIApp, unrouted: Unrouted | None = None) -> None:
        self.app = app
        self.unrouted = unrouted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        request_id_bytes = request_id.encode("latin-1")
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                set_header(raw_headers(message), _REQUEST_ID_HEADER_BYTES, request_id_bytes)
            if status != CLIENT_CLOSED_REQUEST:
                await send(message)

        # Bound for whatever else logs during the request; reset, not left behind.
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # A live stream goes on outside the chain (detached.py): its line when it ends.
            finish = (scope, status, started, request_id, bound, self.unrouted)
            if not defer(scope, _log_request, *finish):
                _log_request(*finish)


Unrouted = Callable[[str, int, float], object]


def _log_request(
    scope: HTTPScope,
    status: int,
    started: float,
    request_id: str,
    bound: Mapping[str, Any],
    unrouted: Unrouted | None,
) -> None:
    """The access log line, with the request id still bound; then unbind it."""
    try:
        seconds = time.perf_counter() - started
        duration_ms = round(seconds * 1000, 2)
        if _access is not None:
            _access.write(_method(scope), scope["path"], status, duration_ms, request_id)
        else:
            access_log.info(
                "http.request",
                method=_method(scope),
                path=scope["path"],
                status=status,
                duration_ms=duration_ms,
            )
        if unrouted is not None and "path_template" not in scope:
            unrouted(scope["method"], status, seconds)
    finally:
        structlog.contextvars.reset_contextvars(**bound)


def _method(scope: HTTPScope) -> str:
    return "HEAD" if HEAD in scope else scope["method"]


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_HEADER_BYTES:
            text = value.decode("latin-1")
            if _GOOD_REQUEST_ID.fullmatch(text):
                return text
    # A correlation id, not a secret: the random module (reseeded in every forked
    # worker) is cheaper than uuid4's read from the kernel (bench/README.md).
    return f"{random.getrandbits(128):032x}"
