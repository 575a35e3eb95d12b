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
from collections.abc import Mapping
from typing import Any

import msgspec
import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware.base import MiddlewareProtocol
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from engage_http.detached import defer

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
_GOOD_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
access_log = structlog.get_logger("engage.access")


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr, for structlog and standard-library loggers alike.

    structlog events (the access log: one per request) are rendered and written
    by structlog itself, as bytes: the standard library's records, handlers and
    formatters cost more per line (bench/README.md). Standard-library records
    get the same fields through the formatter below.
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.JSONRenderer(serializer=_json_line)],
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


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
    the logs, echo it in the response, and log one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # A live stream goes on outside the chain (detached.py): its line when it ends.
            if not defer(scope, _log_request, scope, status, started, bound):
                _log_request(scope, status, started, bound)


def _log_request(scope: HTTPScope, status: int, started: float, bound: Mapping[str, Any]) -> None:
    """The access log line, with the request id still bound; then unbind it."""
    try:
        access_log.info(
            "http.request",
            method=scope["method"],
            path=scope["path"],
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
    finally:
        structlog.contextvars.reset_contextvars(**bound)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_HEADER_BYTES:
            text = value.decode("latin-1")
            if _GOOD_REQUEST_ID.fullmatch(text):
                return text
    # A correlation id, not a secret: the random module (reseeded in every forked
    # worker) is cheaper than uuid4's read from the kernel (bench/README.md).
    return f"{random.getrandbits(128):032x}"
