"""Prometheus: every metric engage exports, and the /metrics endpoint.

- Per-route requests (``RouteMetricsMiddleware``): the four metrics of
  Litestar's Prometheus plugin, with the same names and labels, counted cheaply;
  those answered without a route under the path ``unrouted``.
- Logins by flavour and outcome (``login_attempt``).
- Dashboard cache reads, circuit breakers and the database pool
  (``exporting(services)``): the core and the adapters know nothing of
  Prometheus; they call observers, which count into the metrics below for as
  long as the services live (the app's lifespan).
- ``/metrics`` (``PrometheusExport``): every worker's figures, summed through
  the directory ``engage serve`` sets (``require_shared_metrics``).

Hit ratio over five minutes, for a dashboard or an alert::

    sum(rate(engage_dashboard_cache_requests_total{result="hit"}[5m]))
      / sum(rate(engage_dashboard_cache_requests_total[5m]))
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar, cast

from litestar import Response, get
from litestar.enums import MediaType, ScopeType
from litestar.middleware import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController, PrometheusMiddleware
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge

from engage_adapters.bootstrap import Services
from engage_core.errors import RateLimited, Unauthorized, ValidationFailed
from engage_core.services.dashboard_cache import Lookup
from engage_http.detached import defer

T = TypeVar("T")

LOGINS = Counter(
    "engage_logins_total",
    "Login attempts by flavour (browser, token, refresh) and outcome",
    ["flavour", "outcome"],
)
DASHBOARD_CACHE = Counter(
    "engage_dashboard_cache_requests_total",
    "Dashboard reads (kind: page, summary) by how they were served "
    "(result: hit, miss, or bypass while the cache is unavailable)",
    ["kind", "result"],
)
CIRCUIT_STATE = Gauge(
    "engage_circuit_state",
    "Circuit breaker in front of a dependency: 0 closed (in use), 1 half-open (probing), "
    "2 open (not used; requests are served without it)",
    ["dependency"],
    multiprocess_mode="livemax",  # across workers: the worst
)
# A breaker's state, as the breaker names it, on the gauge's scale: worse is higher.
_CIRCUIT_LEVELS = {"closed": 0, "half-open": 1, "open": 2}
DB_POOL = Gauge(
    "engage_db_pool_connections",
    "Database pool connections (open, idle, in_use) and requests waiting for one, all workers",
    ["state"],
    multiprocess_mode="livesum",
)
POOL_REFRESH_SECONDS = 5.0


# The path label of a request answered without a route (no route for its path or
# method, a CORS preflight): one value for them all, never the raw path, which a
# scan would turn into a new series per request. No route template looks like it.
UNROUTED = "unrouted"
# The method label of such a request: any token is a method, a route's are these.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_metrics() -> DefineMiddleware:
    """The per-route request metrics (``engage_requests_total`` and the others)."""
    return PrometheusConfig(
        app_name="engage",
        prefix="engage",
        group_path=True,
        middleware_class=RouteMetricsMiddleware,
    ).middleware


def unrouted_metrics() -> Callable[[str, int, float], None]:
    """What counts a request answered without a route, in the same metrics as
    ``route_metrics``' (``observability.RequestIdMiddleware`` calls it)."""
    counting = cast("RouteMetricsMiddleware", route_metrics()(_no_app))
    return counting.count_unrouted


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("only counts, never called")


class RouteMetricsMiddleware(PrometheusMiddleware):
    """Counts every request by method, route template and status.

    The plugin's own middleware builds a ``Request`` and parses its URL only to
    throw the path away for the route template, and looks up each child metric
    by its labels on every request; this one looks each up once per label set
    (its cost: bench/README.md, "Why the code is the way it is").
    """

    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        if config.labels or config.exemplars or config.excluded_http_methods:
            raise ValueError("RouteMetricsMiddleware takes no labels, exemplars or exclusions")
        if not config.group_path:
            raise ValueError("RouteMetricsMiddleware labels by route template: set group_path")
        super().__init__(app, config)
        self._app_name = config.app_name
        self._in_progress: dict[tuple[str, str], Any] = {}
        self._finished: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _labels(self, method: str, path: str, status: int) -> dict[str, str | int | float]:
        return {"method": method, "path": path, "status_code": status, "app_name": self._app_name}

    def _in_progress_of(self, method: str, path: str) -> Any:
        key = (method, path)
        child = self._in_progress.get(key)
        if child is None:
            labels = self._labels(method, path, 200)
            child = self.requests_in_progress(labels).labels(*labels.values())
            self._in_progress[key] = child
        return child

    def _finished_of(self, method: str, path: str, status: int) -> tuple[Any, Any]:
        key = (method, path, status)
        children = self._finished.get(key)
        if children is None:
            labels = self._labels(method, path, status)
            values = [*labels.values()]
            children = (
                self.request_count(labels).labels(*values),
                self.request_time(labels).labels(*values),
            )
            self._finished[key] = children
        return children

    def _count_error(self, method: str, path: str, status: int) -> None:
        labels = self._labels(method, path, status)
        self.requests_error_count(labels).labels(*labels.values()).inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"] if scope["type"] == ScopeType.HTTP else str(scope["type"])
        path = scope["path_template"]
        start = time.perf_counter()
        status = 200
        duration = 0.0

        async def noting(message: Message) -> None:
            nonlocal status, duration
            if message["type"] == "http.response.start":
                status = message["status"]
                await send(message)
                # As sent: the app's before_send hooks may change it (headers.py
                # answers a refused CORS preflight with a 403).
                status = message["status"]
                return
            if message["type"] == "http.response.body":
                duration = time.perf_counter() - start
            await send(message)

        in_progress = self._in_progress_of(method, path)
        in_progress.inc()
        try:
            await self.app(scope, receive, noting)
        finally:
            # A live stream goes on outside the chain (detached.py): counted when it ends.
            if not defer(scope, self._finish_detached, in_progress, method, path, status, start):
                self._finish(in_progress, method, path, status, duration)

    def _finish(
        self, in_progress: Any, method: str, path: str, status: int, duration: float
    ) -> None:
        in_progress.dec()
        count, timing = self._finished_of(method, path, status)
        if status >= HTTP_500_INTERNAL_SERVER_ERROR:
            self._count_error(method, path, status)
        count.inc()
        timing.observe(duration)

    def count_unrouted(self, method: str, status: int, seconds: float) -> None:
        """Count a request that no route took (so not in this middleware's chain)."""
        method = method if method in _METHODS else "OTHER"
        count, timing = self._finished_of(method, UNROUTED, status)
        if status >= HTTP_500_INTERNAL_SERVER_ERROR:
            self._count_error(method, UNROUTED, status)
        count.inc()
        timing.observe(seconds)

    def _finish_detached(
        self, in_progress: Any, method: str, path: str, status: int, start: float
    ) -> None:
        # Its last body is sent just before it ends (or its client went since the last).
        self._finish(in_progress, method, path, status, time.perf_counter() - start)


@contextmanager
def login_attempt(flavour: str) -> Iterator[None]:
    """Count one login attempt by how it ended."""
    try:
        yield
    except RateLimited:
        LOGINS.labels(flavour, "rate_limited").inc()
        raise
    except Unauthorized:
        LOGINS.labels(flavour, "refused").inc()
        raise
    except ValidationFailed:
        LOGINS.labels(flavour, "invalid").inc()
        raise
    else:
        LOGINS.labels(flavour, "success").inc()


@contextmanager
def exporting(services: Services) -> Iterator[None]:
    """Count ``services``' dashboard reads, follow their circuit breakers, and
    report their database pool (what their ``observability`` shows)."""
    observed = services.observability
    with ExitStack() as stack:
        if observed.pool_stats is not None:
            follower = asyncio.get_running_loop().create_task(_follow_pool(observed.pool_stats))
            stack.callback(follower.cancel)
        if observed.dashboards is not None:
            stack.callback(_attached(observed.dashboards.observers, _count_lookup))
        for name, breaker in observed.breakers.items():
            gauge = CIRCUIT_STATE.labels(name)
            gauge.set(_CIRCUIT_LEVELS[breaker.state])

            def follow(state: str, gauge: Gauge = gauge) -> None:
                gauge.set(_CIRCUIT_LEVELS[state])

            stack.callback(_attached(breaker.listeners, follow))
        yield


async def _follow_pool(stats: Callable[[], dict[str, int]]) -> None:
    """Copy the pool's figures into the gauge every few seconds, for as long as the app runs."""
    while True:
        figures = stats()
        size, idle = figures.get("pool_size", 0), figures.get("pool_available", 0)
        DB_POOL.labels("open").set(size)
        DB_POOL.labels("idle").set(idle)
        DB_POOL.labels("in_use").set(size - idle)
        DB_POOL.labels("waiting").set(figures.get("requests_waiting", 0))
        await asyncio.sleep(POOL_REFRESH_SECONDS)


def _count_lookup(kind: str, outcome: Lookup) -> None:
    DASHBOARD_CACHE.labels(kind, outcome.value).inc()


def _attached(observers: list[T], observer: T) -> Callable[[], None]:
    """Add ``observer``; return what removes it again."""
    observers.append(observer)
    return lambda: observers.remove(observer)


class PrometheusExport(PrometheusController):
    """Litestar's /metrics, documented as what it is: Prometheus text."""

    @get(
        media_type=MediaType.TEXT,
        tags=["ops"],
        summary="Prometheus metrics of every worker",
        response_description="The Prometheus text format",
    )
    async def get(self) -> Response[str]:
        response: Response[str] = await PrometheusController.get.fn(self)
        return response


def require_shared_metrics() -> None:
    """With several workers (PROMETHEUS_MULTIPROC_DIR set by ``engage serve``),
    every metric must be kept in that directory. prometheus_client decides this
    once, when it is first imported: imported earlier in the parent process, the
    workers would count in memory and /metrics would show nothing."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        raise RuntimeError(
            "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set;"
            " the workers' metrics would not be shared"
        )
