"""The Litestar application: ``create_app`` reads like a table of contents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

from litestar import Litestar, Request, Response
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.exceptions import ClientException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.middleware import DefineMiddleware
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import ASGIApp, Receive, Scope, Send

from engage_adapters.bootstrap import HttpPolicy, Services
from engage_http import bodies, head
from engage_http.bodies import BODY_METHODS
from engage_http.controllers.activity import ActivityController
from engage_http.controllers.auth import AuthController
from engage_http.controllers.email import EmailController
from engage_http.controllers.keys import KeysController
from engage_http.controllers.live import LiveController
from engage_http.controllers.metrics import MetricsController
from engage_http.controllers.mfa import MfaController
from engage_http.controllers.ops import OpsController
from engage_http.controllers.sessions import SessionsController
from engage_http.csrf import (
    CSRF_HEADER,
    CookieSessionCSRFMiddleware,
    csrf_config,
    csrf_cookie_if_unrouted,
)
from engage_http.dependencies import OneAtATime, Providers, dependencies
from engage_http.detached import run_detached
from engage_http.guards import AUTH_GUARDS, AuthGuards
from engage_http.headers import security_headers
from engage_http.observability import RequestIdMiddleware
from engage_http.openapi import (
    ClosedStructSchemaPlugin,
    ParameterProblems,
    docs_assets,
    openapi_config,
)
from engage_http.openapi_headers import document_headers
from engage_http.problems import EXCEPTION_HANDLERS, OutageReport, render
from engage_http.prometheus import PrometheusExport, exporting, route_metrics, unrouted_metrics
from engage_http.stopping import STOPPING, on_stop_signal
from engage_http.upkeep import purging
from engage_http.webapp import missing_page, web_routes

MAX_BODY_BYTES = 1024 * 1024
ServicesFactory = Callable[[], AbstractAsyncContextManager[Services]]


def create_app(services: ServicesFactory, policy: HttpPolicy) -> Litestar:
    """The HTTP API over the services that ``services()`` builds at start-up.

    ``services`` is entered in the app's lifespan (inside the server's event
    loop) and closed at shutdown; tests pass one over fakes or over PostgreSQL.

    A stop signal (SIGTERM, SIGINT) ends the open live streams at once: the
    server waits for open responses before it shuts the app down.
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with services() as built, built.mail_sender.running():
            app.state.services = built

            def stop_streams() -> None:
                app.state.stopping = True
                built.live.end_all(STOPPING)

            with exporting(built), on_stop_signal(stop_streams):
                yield

    # The lifespan leaves the services here: Litestar hands what a lifespan
    # builds to requests only through the app's state (see dependencies.py).
    # Not empty: Litestar puts a State of its own in place of an empty one.
    state = State({"stopping": False, "outages": OutageReport()})
    providers = Providers(policy, state)
    app = _App(
        observed=partial(RequestIdMiddleware, unrouted=unrouted_metrics()),
        route_handlers=[
            AuthController,
            SessionsController,
            MfaController,
            ActivityController,
            EmailController,
            MetricsController,
            LiveController,
            KeysController,
            OpsController,
            PrometheusExport,
            *docs_assets(),
            *web_routes(policy),
        ],
        lifespan=[lifespan, purging],
        state=state,
        dependencies=dependencies(providers),
        opt={AUTH_GUARDS: AuthGuards(policy=policy, limiter=providers.limiter)},
        cors_config=_cors(policy),
        middleware=[
            route_metrics(),
            DefineMiddleware(CookieSessionCSRFMiddleware, config=csrf_config(policy)),
        ],
        before_send=[security_headers(policy)],
        before_request=_before_request,
        exception_handlers=dict.fromkeys(EXCEPTION_HANDLERS, partial(_render, policy)),
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=openapi_config(),
        plugins=[ClosedStructSchemaPlugin(), ParameterProblems(), OneAtATime()],
        debug=False,
        logging_config=None,  # observability.configure_logging owns the log format
    )
    document_headers(app)
    return app


class _App(Litestar):
    """Litestar, with a live stream's events sent from outside all of it once its head
    is sent (``detached.py``): no layer stays suspended while a stream is open; HEAD
    answered for every GET (``head.py``); every request given an id and logged by
    ``observed`` around all of Litestar, so also those that no route takes (the
    route middlewares never see them); and a body that ends early told apart
    from a server fault (``bodies.py``)."""

    def __init__(self, *, observed: Callable[[ASGIApp], ASGIApp], **options: Any) -> None:
        super().__init__(**options)
        self._observed = observed(super().__call__)

    def __call__(  # type: ignore[override]  # the same call, as a coroutine it returns
        self, scope: Scope, receive: Receive, send: Send
    ) -> Coroutine[Any, Any, None]:
        if (get := head.as_get(scope)) is not None:
            return run_detached(self._observed, get, receive, head.without_body(send))
        if scope.get("method") in BODY_METHODS:
            receive = bodies.watching(scope, receive)
        return run_detached(self._observed, scope, receive, send)


def _render(policy: HttpPolicy, request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Problem details (or, for a browser's visit to no page, the app's page with its
    404); a GET that matched no route gets the CSRF cookie too."""
    response = missing_page(request, exc, policy)
    if response is None:
        response = render(request, exc)
    if (cookie := csrf_cookie_if_unrouted(request, policy)) is not None:
        response.set_cookie(cookie)
    return response


def _cors(policy: HttpPolicy) -> CORSConfig | None:
    if not policy.cors_origins:
        return None  # same-origin only
    return CORSConfig(
        allow_origins=list(policy.cors_origins),
        allow_credentials=True,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["content-type", "authorization", CSRF_HEADER, "idempotency-key"],
        # Not CORS-safelisted, so unreadable by another origin's script unless exposed.
        expose_headers=["Retry-After", "WWW-Authenticate", "X-Request-ID"],
        max_age=600,
    )


async def _before_request(request: Request[Any, Any, Any]) -> Response[Any] | None:
    if request.scope["http_version"] == "1.1" and not _names_host(request.scope):
        # RFC 9112, section 3.2: a server must answer 400 to an HTTP/1.1 request without one.
        raise ClientException("an HTTP/1.1 request must name its Host")
    if request.method == "OPTIONS" and request.route_handler.http_methods == {"OPTIONS"}:
        return _options(request)  # Litestar's own answer; a file route answers for its files
    await _require_json_bodies(request)
    return None


def _names_host(scope: Scope) -> bool:
    # granian passes an empty Host for a request that sent none.
    return any(name == b"host" and value for name, value in scope["headers"])


def _options(request: Request[Any, Any, Any]) -> Response[Any]:
    """What Litestar's own OPTIONS answer should be: its Allow header names only the
    methods of the path's first handler (litestar#4169, fixed in Litestar 3)."""
    template = request.scope.get("path_template")
    methods = {
        method
        for route in request.app.routes
        if isinstance(route, HTTPRoute) and route.path_format == template
        for method in route.methods
    }
    allow = ", ".join(head.with_head(methods, request.url.path))
    return Response(content=None, status_code=204, headers={"Allow": allow})


async def _require_json_bodies(request: Request[Any, Any, Any]) -> None:
    """A request that sends a body must send at most 1 MiB of JSON, not content-coded.

    Also for an operation that takes no body: it would never read the body, so
    nothing else would refuse one over the limit.
    """
    if request.method not in BODY_METHODS:
        return
    length = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "")
    if (length is None or length == "0") and not chunked:
        return
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise RequestEntityTooLarge
    coding = request.headers.get("content-encoding", "").strip().lower()
    if coding not in ("", "identity"):
        raise ClientException(
            "send the body without a content coding (Content-Encoding: identity)",
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            headers={"Accept-Encoding": "identity"},
        )
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ClientException(
            "send the body as application/json", status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE
        )
