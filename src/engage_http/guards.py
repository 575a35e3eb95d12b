"""The guards of the routes that take credentials in the body (signup, login,
token, refresh, the links in mails): a browser on a foreign origin is refused,
and attempts are limited per client address.

Litestar gives guards no ``Provide`` (litestar#1129; a dependency would run only
after the body is read, so a malformed one would skip the limit): ``create_app``
hands every route what the guards check against, ``AuthGuards``, in its ``opt``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from attrs import frozen
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from engage_adapters.bootstrap import HttpPolicy
from engage_core.errors import Forbidden, RateLimited
from engage_core.ports import RateLimiter
from engage_http.client_address import client_address

# The key of a route's ``opt`` that holds its ``AuthGuards``.
AUTH_GUARDS = "engage.auth_guards"


@frozen(kw_only=True)
class AuthGuards:
    """What the guards below check against."""

    policy: HttpPolicy
    # The running app's limiter (it is built when the app starts).
    limiter: Callable[[], RateLimiter]

    def refuse_foreign_origin(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        origin = connection.headers.get("origin")
        if origin is None:
            return
        if origin.rstrip("/") in self.policy.cors_origins:
            return
        host = connection.headers.get("host", "").lower()
        if host and _netloc(origin) == host:
            return
        raise Forbidden("requests from this origin are not allowed")

    async def limit_auth_attempts(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        address = client_address(connection, self.policy.trusted_proxies)
        decision = await self.limiter().hit(
            f"auth-address:{address}", limit=self.policy.auth_rate_per_minute, window=60.0
        )
        if not decision.allowed:
            raise RateLimited(
                "too many authentication requests from this address; slow down",
                retry_after=math.ceil(decision.retry_after),
            )


def refuse_foreign_origin(
    connection: ASGIConnection[Any, Any, Any, Any], route: BaseRouteHandler
) -> None:
    """Guard: a browser request from an origin that is neither this site nor listed
    in ENGAGE_CORS_ORIGINS may not sign up or log in. No Origin: not a browser."""
    _guards_of(route).refuse_foreign_origin(connection)


async def limit_auth_attempts(
    connection: ASGIConnection[Any, Any, Any, Any], route: BaseRouteHandler
) -> None:
    """Guard: signup, login, token and refresh together, per client address."""
    await _guards_of(route).limit_auth_attempts(connection)


def _guards_of(route: BaseRouteHandler) -> AuthGuards:
    guards: AuthGuards = route.opt[AUTH_GUARDS]
    return guards


def _netloc(url: str) -> str:
    try:
        parts = urlsplit(url)
        return parts.netloc.lower() if parts.scheme in ("http", "https") else ""
    except ValueError:
        return ""
