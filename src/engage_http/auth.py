"""Who is calling: bearer token or cookie, CSRF for cookie sessions, origins, address limits."""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.base import MiddlewareProtocol
from litestar.middleware.csrf import CSRFMiddleware, generate_csrf_token
from litestar.params import SkipValidation
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from engage_adapters.bootstrap import HttpPolicy, Services
from engage_adapters.settings import Network
from engage_core.errors import Forbidden, RateLimited, Unauthorized
from engage_core.model import Client
from engage_core.services.api_keys import ApiKeyScope, KeyPrincipal, looks_like_api_key
from engage_core.services.auth import BrowserLogin, Principal
from engage_http.problems import render

ACCESS_COOKIE = "engage_access"
REFRESH_COOKIE = "engage_refresh"
REFRESH_PATH = "/api/auth"
CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "x-csrftoken"
_SESSION_COOKIES = (f"{ACCESS_COOKIE}=".encode(), f"{REFRESH_COOKIE}=".encode())


def policy_of(request: Request[Any, Any, Any]) -> HttpPolicy:
    policy: HttpPolicy = request.app.state.http_policy
    return policy


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


# --- authentication ---------------------------------------------------------------

# A handler parameter for the caller, injected by name from ``provide_principal``.
CurrentPrincipal = NamedDependency[Principal]
# On the metrics endpoints the caller may also be an API key (``provide_caller``);
# not re-validated (msgspec takes no union of two attrs classes).
Caller = Principal | KeyPrincipal
CurrentCaller = NamedDependency[SkipValidation[Caller]]
_SAFE_METHODS = frozenset({"GET", "HEAD"})


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None without the header."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use Authorization: Bearer <token>", reason="bad authorization header")
    return token.strip()


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller: ``Authorization: Bearer`` when present (the cookie is then
    ignored), else the ``engage_access`` cookie. Never an API key."""
    services = services_of(request)
    token = bearer_token(request)
    if token is not None:
        if looks_like_api_key(token):
            raise Unauthorized(
                "API keys are accepted on the metrics endpoints only", reason="api key elsewhere"
            )
        return await services.auth.authenticate(token)
    cookie = request.cookies.get(ACCESS_COOKIE)
    if not cookie:
        raise Unauthorized("authentication required", reason="no credentials")
    return await services.auth.authenticate(cookie)


async def provide_caller(request: Request[Any, Any, Any]) -> Caller:
    """The caller of a metrics endpoint: an API key holding the scope the method
    needs (metrics:read to read, metrics:write to record), or a signed-in user."""
    token = bearer_token(request)
    if token is not None and looks_like_api_key(token):
        scope = (
            ApiKeyScope.METRICS_READ
            if request.method in _SAFE_METHODS
            else ApiKeyScope.METRICS_WRITE
        )
        return await services_of(request).api_keys.authenticate(token, scope)
    return await provide_principal(request)


# --- cookies ------------------------------------------------------------------------


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(0, math.ceil((moment - now).total_seconds()))


def session_cookies(
    login: BrowserLogin, policy: HttpPolicy, now: datetime, csrf_cookie: str | None
) -> list[Cookie]:
    """The access, refresh and CSRF cookies for a browser session."""
    cookies = [
        Cookie(
            key=ACCESS_COOKIE,
            value=login.access_token,
            path="/",
            httponly=True,
            secure=policy.cookie_secure,
            samesite="lax",
            max_age=_seconds_until(login.access_expires_at, now),
        ),
        Cookie(
            key=REFRESH_COOKIE,
            value=login.refresh_token,
            path=REFRESH_PATH,
            httponly=True,
            secure=policy.cookie_secure,
            samesite="strict",
            max_age=_seconds_until(login.refresh_expires_at, now),
        ),
    ]
    if not csrf_cookie:
        cookies.append(
            Cookie(
                key=CSRF_COOKIE,
                value=generate_csrf_token(policy.csrf_secret),
                path="/",
                httponly=False,  # the frontend reads it and echoes it in X-CSRFToken
                secure=policy.cookie_secure,
                samesite="lax",
            )
        )
    return cookies


def cleared_cookies(policy: HttpPolicy) -> list[Cookie]:
    """Cookies that make the browser forget the session."""
    return [
        Cookie(
            key=ACCESS_COOKIE,
            value="",
            path="/",
            httponly=True,
            secure=policy.cookie_secure,
            samesite="lax",
            max_age=0,
        ),
        Cookie(
            key=REFRESH_COOKIE,
            value="",
            path=REFRESH_PATH,
            httponly=True,
            secure=policy.cookie_secure,
            samesite="strict",
            max_age=0,
        ),
    ]


# --- CSRF ---------------------------------------------------------------------------


def csrf_config(policy: HttpPolicy) -> CSRFConfig:
    return CSRFConfig(
        secret=policy.csrf_secret,
        cookie_name=CSRF_COOKIE,
        header_name=CSRF_HEADER,
        cookie_secure=policy.cookie_secure,
        cookie_httponly=False,
        cookie_samesite="lax",
    )


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
        rendered = Cookie(
            key=config.cookie_name,
            value="-",
            path=config.cookie_path,
            secure=config.cookie_secure,
            httponly=config.cookie_httponly,
            samesite=config.cookie_samesite,
            domain=config.cookie_domain,
        ).to_header(header="")
        self._cookie_prefix = f"{config.cookie_name}=".encode()
        self._cookie_attributes = rendered.partition(";")[2].encode("latin-1")
        self._cookie_name = config.cookie_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        cast("dict[str, Any]", scope)[_CSRF_SEEN] = True
        if scope["method"] in self._safe_methods:
            if _has_cookie(scope, self._cookie_name):
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


# Marks a request the middleware above saw. Requests that match no route (404,
# 405) are answered before any middleware runs.
_CSRF_SEEN = "engage.csrf_seen"


def csrf_cookie_if_unrouted(request: Request[Any, Any, Any]) -> Cookie | None:
    """The ``csrftoken`` cookie for a GET or HEAD that matched no route and
    brought none: the contract has every GET response set it."""
    if (
        request.scope.get(_CSRF_SEEN)
        or request.method not in ("GET", "HEAD")
        or request.cookies.get(CSRF_COOKIE)
    ):
        return None
    policy = policy_of(request)
    return Cookie(
        key=CSRF_COOKIE,
        value=generate_csrf_token(policy.csrf_secret),
        path="/",
        httponly=False,
        secure=policy.cookie_secure,
        samesite="lax",
    )


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


# --- origins and per-address limits -------------------------------------------------


def _netloc(url: str) -> str:
    try:
        parts = urlsplit(url)
        return parts.netloc.lower() if parts.scheme in ("http", "https") else ""
    except ValueError:
        return ""


def refuse_foreign_origin(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: a browser request from an origin that is neither this site nor listed
    in ENGAGE_CORS_ORIGINS may not sign up or log in. No Origin: not a browser."""
    origin = connection.headers.get("origin")
    if origin is None:
        return
    policy: HttpPolicy = connection.app.state.http_policy
    if origin.rstrip("/") in policy.cors_origins:
        return
    host = connection.headers.get("host", "").lower()
    if host and _netloc(origin) == host:
        return
    raise Forbidden("requests from this origin are not allowed")


async def limit_auth_attempts(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: signup, login, token and refresh together, per client address."""
    policy: HttpPolicy = connection.app.state.http_policy
    services: Services = connection.app.state.services
    address = client_address(connection, policy.trusted_proxies)
    decision = await services.limiter.hit(
        f"auth-address:{address}", limit=policy.auth_rate_per_minute, window=60.0
    )
    if not decision.allowed:
        raise RateLimited(
            "too many authentication requests from this address; slow down",
            retry_after=math.ceil(decision.retry_after),
        )


def client_address(
    connection: ASGIConnection[Any, Any, Any, Any], trusted_proxies: tuple[Network, ...]
) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the
    nearest address in X-Forwarded-For that is not one (each proxy appends the
    address it was reached from, so only the entries after the last untrusted
    one are believed; a client cannot choose its address by sending the header)."""
    peer = connection.client.host if connection.client else "unknown"
    if not trusted_proxies or not _is_trusted(peer, trusted_proxies):
        return peer
    hops = [
        hop.strip()
        for header in connection.headers.getall("x-forwarded-for", [])
        for hop in header.split(",")
    ]
    address = peer
    for hop in reversed(hops):
        try:
            parsed = ipaddress.ip_address(hop)
        except ValueError:
            return address  # a proxy wrote no address here: stop at the last known one
        address = str(parsed)
        if not _is_trusted(address, trusted_proxies):
            return address
    return address


def client_of(request: Request[Any, Any, Any]) -> Client:
    """Where the request comes from, for sessions and the activity log: the address
    as ``client_address`` finds it, and the User-Agent header (trimmed)."""
    return Client(
        ip=client_address(request, policy_of(request).trusted_proxies),
        user_agent=request.headers.get("user-agent"),
    )


def _is_trusted(address: str, trusted_proxies: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted_proxies)
