"""Per-route request metrics: Litestar's Prometheus middleware, made cheap.

The same four metrics, names and labels as
``litestar.plugins.prometheus.PrometheusMiddleware`` (requests, durations,
errors and requests in progress, by method, route template, status and app),
so dashboards written for the plugin work unchanged. What it saves on every
request: building a ``Request`` and parsing its URL only to throw the path
away for the route template, and the ``labels(...)`` lookup of each child
metric, which is done once per label set here. The plugin's version measured
about 6% of the CPU of an authenticated read.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class RouteMetricsMiddleware(PrometheusMiddleware):
    """Counts every request by method, route template and status."""

    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        if config.labels or config.exemplars or config.excluded_http_methods:
            raise ValueError("RouteMetricsMiddleware takes no labels, exemplars or exclusions")
        if not config.group_path:
            raise ValueError("RouteMetricsMiddleware labels by route template: set group_path")
        super().__init__(app, config)
        self._in_progress: dict[tuple[str, str], Any] = {}
        self._finished: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _labels(self, method: str, path: str, status: int) -> dict[str, str | int | float]:
        return {
            "method": method,
            "path": path,
            "status_code": status,
            "app_name": self._config.app_name,
        }

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
            elif message["type"] == "http.response.body":
                duration = time.perf_counter() - start
            await send(message)

        in_progress = self._in_progress_of(method, path)
        in_progress.inc()
        try:
            await self.app(scope, receive, noting)
        finally:
            in_progress.dec()
            count, timing = self._finished_of(method, path, status)
            if status >= HTTP_500_INTERNAL_SERVER_ERROR:
                self._count_error(method, path, status)
            count.inc()
            timing.observe(duration)
