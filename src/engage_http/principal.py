"""Who is calling: a bearer token or the ``engage_access`` cookie (a signed-in
user), or, on the metrics endpoints, an API key; handlers take it as a parameter."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from engage_core.errors import Unauthorized
from engage_core.model import ApiKeyScope
from engage_core.services.api_keys import ApiKeyService, KeyPrincipal, looks_like_api_key
from engage_core.services.auth import AuthService, Principal
from engage_http.cookies import ACCESS_COOKIE
from engage_http.dependencies import Injected

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


async def provide_principal(
    request: Request[Any, Any, Any], auth: Injected[AuthService]
) -> Principal:
    """The caller: ``Authorization: Bearer`` when present (the cookie is then
    ignored), else the ``engage_access`` cookie. Never an API key."""
    token = bearer_token(request)
    if token is not None:
        if looks_like_api_key(token):
            raise Unauthorized(
                "API keys are accepted on the metrics endpoints only", reason="api key elsewhere"
            )
        return await auth.authenticate(token)
    cookie = request.cookies.get(ACCESS_COOKIE)
    if not cookie:
        raise Unauthorized("authentication required", reason="no credentials")
    return await auth.authenticate(cookie)


async def provide_caller(
    request: Request[Any, Any, Any],
    auth: Injected[AuthService],
    api_keys: Injected[ApiKeyService],
) -> Caller:
    """The caller of a metrics endpoint: an API key holding the scope the method
    needs (metrics:read to read, metrics:write to record), or a signed-in user."""
    token = bearer_token(request)
    if token is not None and looks_like_api_key(token):
        scope = (
            ApiKeyScope.METRICS_READ
            if request.method in _SAFE_METHODS
            else ApiKeyScope.METRICS_WRITE
        )
        return await api_keys.authenticate(token, scope)
    return await provide_principal(request, auth)
