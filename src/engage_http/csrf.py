"""CSRF for cookie sessions: Litestar's double-submit check (the ``csrftoken``
cookie echoed in X-CSRFToken), on the requests a browser's ambient credentials
could forge, and the ``csrftoken`` cookie on every GET answer.

Ours wraps Litestar's ``CSRFMiddleware`` rather than being it, because Litestar's
checks every state change (a bearer request is exempt here) and never sees a
request that matched no route (whose GET answer must set the cookie too).
"""

from __future__ import annotations

from typing import Any, cast

from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.middleware.base import MiddlewareProtocol
from litestar.middleware.csrf import CSRFMiddleware, generate_csrf_token
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from engage_adapters.bootstrap import HttpPolicy
from engage_http.cookies import ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE, csrf_cookie
from engage_http.problems import render

CSRF_HEADER = "x-csrftoken"
_SESSION_COOKIES = (f"{ACCESS_COOKIE}=".encode(), f"{REFRESH_COOKIE}=".encode())
# Marks a request the middleware saw. Requests that match no route (404, 405)
# are answered before any middleware runs.
_CSRF_SEEN = "engage.csrf_seen"


def csrf_config(policy: HttpPolicy) -> CSRFConfig:
    """Litestar's check, told of the cookie as ``cookies.csrf_cookie`` builds it."""
    cookie = csrf_cookie("", secure=policy.cookie_secure)
    return CSRFConfig(
        secret=policy.csrf_secret,
        cookie_name=cookie.key,
        header_name=CSRF_HEADER,
        cookie_path=cookie.path,
        cookie_secure=bool(cookie.secure),
        cookie_httponly=bool(cookie.httponly),
        cookie_samesite=cookie.samesite,
        cookie_domain=cookie.domain,
    )


def new_csrf_cookie(policy: HttpPolicy) -> Cookie:
    return csrf_cookie(generate_csrf_token(policy.csrf_secret), secure=policy.cookie_secure)


def csrf_cookie_if_missing(request: Request[Any, Any, Any], policy: HttpPolicy) -> Cookie | None:
    """A new ``csrftoken`` cookie when the request brought none (or an empty one)."""
    return None if request.cookies.get(CSRF_COOKIE) else new_csrf_cookie(policy)


def csrf_cookie_if_unrouted(request: Request[Any, Any, Any], policy: HttpPolicy) -> Cookie | None:
    """The ``csrftoken`` cookie for a GET or HEAD that matched no route and
    brought none: the contract has every GET response set it."""
    if request.scope.get(_CSRF_SEEN) or request.method not in ("GET", "HEAD"):
        return None
    return csrf_cookie_if_missing(request, policy)


class CookieSessionCSRFMiddleware(MiddlewareProtocol):
    """Litestar's CSRF check, for the requests it protects: state changes
    authenticated by a session cookie. A request with a bearer token, or with
    no session cookie at all, cannot ride on a browser's ambient credentials.

    Safe methods do what Litestar's middleware does for them (pass, and set the
    ``csrftoken`` cookie on the response when the request brought none) without
    building a Request and parsing every header and cookie, which every read
    would pay for (bench/README.md).
    """

    def __init__(self, app: ASGIApp, config: CSRFConfig) -> None:
        self.app = app
        self.checked = CSRFMiddleware(app, config)
        self._secret = config.secret
        self._safe_methods = frozenset(config.safe_methods)
        # The cookie's attributes as Litestar renders them, after "csrftoken=<token>".
        rendered = csrf_cookie("-", secure=config.cookie_secure).to_header(header="")
        self._cookie_prefix = f"{CSRF_COOKIE}=".encode()
        self._cookie_attributes = rendered.partition(";")[2].encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        cast("dict[str, Any]", scope)[_CSRF_SEEN] = True
        if scope["method"] in self._safe_methods:
            if _has_cookie(scope, CSRF_COOKIE):
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, self._issuing_token(send))
        elif _rides_on_session_cookie(scope):
            await self._check(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _issuing_token(self, send: Send) -> Send:
        header = (
            self._cookie_prefix
            + generate_csrf_token(self._secret).encode("ascii")
            + b";"
            + self._cookie_attributes
        )

        async def with_token(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"set-cookie", header)]
            await send(message)

        return with_token

    async def _check(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.checked(scope, receive, noting_start)
        except PermissionDeniedException as exc:
            if started:
                raise
            # Answered here, not by the app's outermost handler, so that the
            # middlewares around this one (request ids, metrics) see a 403.
            request: Request[Any, Any, Any] = Request(scope, receive)
            response = render(request, exc).to_asgi_response(app=None, request=request)
            await response(scope, receive, send)


def _cookie_headers(scope: Scope) -> list[bytes]:
    return [value for name, value in scope["headers"] if name == b"cookie"]


def _has_cookie(scope: Scope, name: str) -> bool:
    """Whether the request brings a non-empty cookie of this name."""
    for header in _cookie_headers(scope):
        for pair in header.decode("latin-1").split(";"):
            key, _, value = pair.partition("=")
            if key.strip() == name and value.strip().strip('"'):
                return True
    return False


def _rides_on_session_cookie(scope: Scope) -> bool:
    cookie_header = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return False
        if name == b"cookie":
            cookie_header += b";" + value
    return any(marker in cookie_header for marker in _SESSION_COOKIES)
