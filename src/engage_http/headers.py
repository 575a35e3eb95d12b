"""The headers every response carries (CONTRACT §4 "Headers"), set in one place.

A ``before_send`` hook, because it sees every response the app sends: handler
answers, problems, 404s, /metrics, /schema and the CORS preflights that
Litestar answers before any route or middleware runs.

- ``X-Content-Type-Options: nosniff`` on every response.
- ``Cache-Control: no-store`` on a response that sets a cookie, and on one to a
  request with credentials (a bearer token or a session cookie) unless its
  handler chose a caching policy of its own (a static asset is the same for all).
- ``Strict-Transport-Security`` while cookies are Secure (the site is on HTTPS).
- ``Connection: close`` on a 413: the rest of the body is never read, so the
  server drops the connection, and the client must know not to reuse it.
- A refused CORS preflight is a 403 problem, like any other refusal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from typing import Any, cast

from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.types import BeforeMessageSendHookHandler, Message, Scope

from engage_adapters.bootstrap import HttpPolicy
from engage_http.cookies import ACCESS_COOKIE, REFRESH_COOKIE
from engage_http.problems import MEDIA_TYPE, TYPE_PREFIX

HSTS = "max-age=63072000; includeSubDomains"
_HSTS = HSTS.encode("latin-1")
_PROBLEM_MEDIA_TYPE = MEDIA_TYPE.encode("latin-1")
_REFUSED_PREFLIGHT = "engage.refused_preflight"  # the problem body to send instead
_SESSION_COOKIES = frozenset({ACCESS_COOKIE, REFRESH_COOKIE})


def security_headers(policy: HttpPolicy) -> BeforeMessageSendHookHandler:
    async def set_headers(message: Message, scope: Scope) -> None:
        if scope["type"] != ScopeType.HTTP:
            return
        state: dict[str, Any] = scope  # type: ignore[assignment]  # one key of our own
        if message["type"] == "http.response.start":
            _on_start(message, state, policy)
        elif message["type"] == "http.response.body" and _REFUSED_PREFLIGHT in state:
            message["body"] = state.pop(_REFUSED_PREFLIGHT)
            message["more_body"] = False

    return set_headers


def _on_start(message: Any, scope: dict[str, Any], policy: HttpPolicy) -> None:
    headers = raw_headers(message)
    # Only a preflight can be refused: the request's headers are parsed for OPTIONS alone.
    if scope["method"] == "OPTIONS":
        request_headers = Headers(scope["headers"])
        detail = _preflight_refusal(scope, message["status"], request_headers)
        if detail is not None:
            body = _problem(403, "forbidden", "Forbidden", detail)
            scope[_REFUSED_PREFLIGHT] = body
            message["status"] = 403
            set_header(headers, b"content-type", _PROBLEM_MEDIA_TYPE)
            set_header(headers, b"content-length", str(len(body)).encode("latin-1"))
    set_header(headers, b"x-content-type-options", b"nosniff")
    if policy.cookie_secure:
        set_header(headers, b"strict-transport-security", _HSTS)
    if _has_header(headers, b"set-cookie") or (
        not _has_header(headers, b"cache-control") and _has_credentials(scope["headers"])
    ):
        set_header(headers, b"cache-control", b"no-store")
    if message["status"] == 413:
        set_header(headers, b"connection", b"close")


RawHeaders = list[tuple[bytes, bytes]]


def raw_headers(message: Any) -> RawHeaders:
    """A start message's header list, to change in place (as ``MutableScopeHeaders``
    holds it, without building one per response)."""
    if "headers" not in message:
        raise ValueError(f"Invalid message type: {message['type']!r}")
    headers = message["headers"]
    if not isinstance(headers, list):
        headers = message["headers"] = list(headers)
    return cast("RawHeaders", headers)


def set_header(headers: RawHeaders, name: bytes, value: bytes) -> None:
    """``MutableScopeHeaders``' ``headers[name] = value``: the first header of that
    name (in any case) takes the value, later ones go; none, and it is appended.
    ``name`` in lower case."""
    for index, (key, _) in enumerate(headers):
        if key.lower() == name:
            headers[index] = (name, value)
            later = index + 1
            if any(other.lower() == name for other, _ in headers[later:]):
                headers[later:] = [pair for pair in headers[later:] if pair[0].lower() != name]
            return
    headers.append((name, value))


def _has_header(headers: RawHeaders, name: bytes) -> bool:
    return any(key.lower() == name for key, _ in headers)


def _has_credentials(request_headers: Iterable[tuple[bytes, bytes]]) -> bool:
    cookie_values: list[str] = []
    for name, value in request_headers:
        key = name.lower()
        if key == b"authorization":
            return True
        if key == b"cookie":
            cookie_values.append(value.decode("latin-1"))
    cookies = SimpleCookie()
    for text in cookie_values:
        try:
            cookies.load(text)
        except CookieError:
            continue  # a malformed cookie header authenticates nobody
    return not _SESSION_COOKIES.isdisjoint(cookies)


def _preflight_refusal(scope: dict[str, Any], status: int, headers: Headers) -> str | None:
    """Why a CORS preflight was refused, or None if this is not a refused preflight.

    With ENGAGE_CORS_ORIGINS set, Litestar answers every preflight itself, a
    refusal as a plain-text 400; without it, no origin but this site's is allowed.
    """
    origin = headers.get("origin")
    if scope["method"] != "OPTIONS" or not origin:
        return None
    config = scope["litestar_app"].cors_config
    if config is None:
        preflight = "access-control-request-method" in headers
        if not preflight or status >= 300 or _same_site(origin, headers):
            return None
        return "cross-origin requests are not allowed"
    if status != 400:
        return None
    if not config.is_origin_allowed(origin):
        return f"requests from the origin {origin} are not allowed"
    method = headers.get("access-control-request-method", "")
    if method not in config.allow_methods:
        return f"the method {method} is not allowed across origins"
    return "a requested header is not allowed across origins"


def _same_site(origin: str, headers: Headers) -> bool:
    host = headers.get("host", "").lower()
    return bool(host) and origin.lower().split("://", 1)[-1].rstrip("/") == host


def _problem(status: int, kind: str, title: str, detail: str) -> bytes:
    body = {"type": TYPE_PREFIX + kind, "title": title, "status": status, "detail": detail}
    return json.dumps(body).encode()
