"""Who is calling: a bearer token or the ``engage_access`` cookie (a signed-in
user), or, on the metrics endpoints, an API key; handlers take it as a parameter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from attrs import frozen
from litestar import Request
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from engage_core.errors import Unauthorized
from engage_core.model import ApiKeyScope, Client
from engage_core.services.api_keys import (
    ApiKeyService,
    KeyAdmission,
    KeyPrincipal,
    looks_like_api_key,
)
from engage_core.services.auth import Admission, AuthService, Principal
from engage_http.cookies import ACCESS_COOKIE, REFRESH_COOKIE
from engage_http.dependencies import Injected

# A handler parameter for the caller, injected by name from ``provide_principal``.
CurrentPrincipal = NamedDependency[Principal]
# On the metrics endpoints the caller may also be an API key (``provide_caller``);
# not re-validated (msgspec takes no union of two attrs classes).
Caller = Principal | KeyPrincipal
CurrentCaller = NamedDependency[SkipValidation[Caller]]
_SAFE_METHODS = frozenset({"GET", "HEAD"})
T = TypeVar("T")


@frozen
class MetricsCaller:
    """The caller of a metrics endpoint, whose every answer comes from ``run``: an
    API key (``KeyAdmission``) or a signed-in user (``Admission``), checked with
    the work, so that the check and the work's statement are one round trip to
    the database."""

    _key: KeyAdmission | None = None
    _admission: Admission | None = None

    async def run(self, work: Callable[[Caller], Awaitable[T]]) -> T:
        """``work``'s result for the caller, once it is known to be allowed."""
        if self._key is not None:
            return await self._key.run(work)
        assert self._admission is not None
        return await self._admission.run(work)


# A metrics handler's parameter for its caller, injected from ``provide_metrics_caller``.
CurrentMetricsCaller = NamedDependency[SkipValidation[MetricsCaller]]


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None without the header."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use Authorization: Bearer <token>", reason="bad authorization header")
    return token.strip()


def _access_token(request: Request[Any, Any, Any]) -> str:
    """``Authorization: Bearer`` when present (the cookie is then ignored), else the
    ``engage_access`` cookie. Never an API key."""
    token = bearer_token(request)
    if token is not None:
        if looks_like_api_key(token):
            raise Unauthorized(
                "API keys are accepted on the metrics endpoints only", reason="api key elsewhere"
            )
        return token
    cookie = request.cookies.get(ACCESS_COOKIE)
    if not cookie:
        raise Unauthorized("authentication required", reason="no credentials")
    return cookie


async def provide_principal(
    request: Request[Any, Any, Any], auth: Injected[AuthService]
) -> Principal:
    """The caller, a signed-in user: their session is checked before the handler runs."""
    return await auth.authenticate(_access_token(request))


async def provide_logout_principal(
    request: Request[Any, Any, Any], auth: Injected[AuthService], client: Injected[Client]
) -> Principal:
    """The caller of a logout: as ``provide_principal`` finds them, or else, for a
    browser whose access cookie has expired (or gone), the session of its refresh
    cookie, so that logging out ends that session rather than answering 401."""
    try:
        return await provide_principal(request, auth)
    except Unauthorized:
        refresh = request.cookies.get(REFRESH_COOKIE)
        if not refresh or request.headers.get("authorization") is not None:
            raise
    return await auth.refresh_principal(refresh, client)


async def provide_caller(
    request: Request[Any, Any, Any],
    auth: Injected[AuthService],
    api_keys: Injected[ApiKeyService],
) -> Caller:
    """The caller of a metrics endpoint: an API key holding the scope the method
    needs (metrics:read to read, metrics:write to record), or a signed-in user."""
    token = bearer_token(request)
    if token is not None and looks_like_api_key(token):
        return await _key_holder(request, api_keys, token)
    return await provide_principal(request, auth)


async def provide_metrics_caller(
    request: Request[Any, Any, Any],
    auth: Injected[AuthService],
    api_keys: Injected[ApiKeyService],
) -> MetricsCaller:
    """The caller of a metrics endpoint, as ``provide_caller`` finds it, except that
    the key or the signed-in user's session is checked by ``MetricsCaller.run``,
    with the work."""
    token = bearer_token(request)
    if token is not None and looks_like_api_key(token):
        return MetricsCaller(key=api_keys.admit(token, _scope_of(request)))
    return MetricsCaller(admission=await auth.admit(_access_token(request)))


def _scope_of(request: Request[Any, Any, Any]) -> ApiKeyScope:
    """The scope the method needs: metrics:read to read, metrics:write to record."""
    return (
        ApiKeyScope.METRICS_READ if request.method in _SAFE_METHODS else ApiKeyScope.METRICS_WRITE
    )


async def _key_holder(
    request: Request[Any, Any, Any], api_keys: ApiKeyService, token: str
) -> KeyPrincipal:
    return await api_keys.authenticate(token, _scope_of(request))
