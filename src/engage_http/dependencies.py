"""What handlers are given: one provider (Litestar's ``Provide``) per service,
by the name of the handler parameter that takes it.

A handler names what it uses in its signature, e.g.
``async def me(self, principal: CurrentPrincipal, auth: Injected[AuthService])``;
``create_app`` registers ``dependencies(...)`` on the app, so every handler may ask.

The services are built in the app's lifespan (inside the server's event loop, after
the app exists), and Litestar hands what a lifespan builds to requests only through
the app's state: the providers here are what read it, nothing else in the request path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

from attrs import frozen
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from engage_adapters.bootstrap import HttpPolicy, Readiness, Services
from engage_core.model import Client
from engage_core.ports import Clock, RateLimiter
from engage_core.services.activity import ActivityLog
from engage_core.services.api_keys import ApiKeyService
from engage_core.services.auth import AuthService
from engage_core.services.email import EmailFlows
from engage_core.services.idempotency import IdempotencyGuard
from engage_core.services.live import LiveMetrics
from engage_core.services.metrics import MetricsService
from engage_core.services.mfa import MfaService
from engage_http.client_address import client_of

T = TypeVar("T")
# A parameter one of the providers below fills by its name. What they give is
# built by us, so Litestar does not validate it (msgspec knows no Protocol).
Injected: TypeAlias = NamedDependency[SkipValidation[T]]
# How ready the app is: every probe's state (GET /readyz).
ReadinessCheck: TypeAlias = Callable[[], Awaitable[Readiness]]


@frozen
class Providers:
    """The providers of one app: ``state`` is where its lifespan leaves the
    services it built. All but ``client`` take no parameter, so a request pays
    for a call, not a validation, per service it asks for (the guards take
    ``limiter`` from here too)."""

    _policy: HttpPolicy
    _state: State

    def services(self) -> Services:
        """The services the app's lifespan built."""
        services: Services = self._state.services
        return services

    def policy(self) -> HttpPolicy:
        return self._policy

    def clock(self) -> Clock:
        return self.services().clock

    def auth(self) -> AuthService:
        return self.services().auth

    def mfa(self) -> MfaService:
        return self.services().mfa

    def email_flows(self) -> EmailFlows:
        return self.services().email

    def activity(self) -> ActivityLog:
        return self.services().activity

    def metrics(self) -> MetricsService:
        return self.services().metrics

    def idempotency(self) -> IdempotencyGuard:
        return self.services().idempotency

    def api_keys(self) -> ApiKeyService:
        return self.services().api_keys

    def live(self) -> LiveMetrics:
        return self.services().live

    def limiter(self) -> RateLimiter:
        return self.services().limiter

    def readiness(self) -> ReadinessCheck:
        return self.services().readiness

    def stopping(self) -> bool:
        """Whether the server was told to stop (the lifespan sets it at the signal)."""
        return bool(self._state.stopping)

    def client(self, request: Request[Any, Any, Any]) -> Client:
        """Where the request comes from (address and User-Agent), for sessions and
        the activity log."""
        return client_of(request, self._policy.trusted_proxies)


def dependencies(providers: Providers) -> dict[str, Provide]:
    """Every service a handler may take, by parameter name."""
    by_name: dict[str, Callable[..., Any]] = {
        "policy": providers.policy,
        "clock": providers.clock,
        "auth": providers.auth,
        "mfa": providers.mfa,
        # Not "email": a dependency's name must be no field of any body (Litestar
        # takes a body error on a field of that name for a dependency's, a 500).
        "email_flows": providers.email_flows,
        "activity": providers.activity,
        "metrics": providers.metrics,
        "idempotency": providers.idempotency,
        "api_keys": providers.api_keys,
        "live": providers.live,
        "readiness": providers.readiness,
        "stopping": providers.stopping,
        "client": providers.client,
    }
    return {name: Provide(provider, sync_to_thread=False) for name, provider in by_name.items()}


class OneAtATime(ReceiveRoutePlugin):
    """Every route resolves its dependencies one after the other.

    Litestar resolves a handler's independent dependencies concurrently, in an
    anyio task group per request (litestar-org/litestar#4563). Ours return a
    service already built, and at most one (the caller) awaits I/O, so the task
    group is pure cost (bench/README.md). Each batch of independent dependencies
    becomes batches of one, in the same topological order, which Litestar
    resolves by a plain call.
    """

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for _, model in route.route_handler_map.values():
            model.dependency_batches = [
                {dependency}
                for batch in model.dependency_batches
                for dependency in sorted(batch, key=lambda d: d.key)
            ]
