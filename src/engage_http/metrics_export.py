"""Prometheus metrics of the shared cache: dashboard hit ratio and Redis's circuit.

The core and the adapters know nothing of Prometheus; they call observers.
``exporting(services)`` attaches observers that count into the metrics below
for as long as the services live (the app's lifespan).

Hit ratio over five minutes, for a dashboard or an alert::

    sum(rate(engage_dashboard_cache_requests_total{result="hit"}[5m]))
      / sum(rate(engage_dashboard_cache_requests_total[5m]))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TypeVar

from prometheus_client import Counter, Gauge

from engage_adapters.bootstrap import Services
from engage_adapters.redis_breaker import BreakerState
from engage_core.services.dashboard_cache import Lookup

T = TypeVar("T")

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


DB_POOL = Gauge(
    "engage_db_pool_connections",
    "Database pool connections (open, idle, in_use) and requests waiting for one, all workers",
    ["state"],
    multiprocess_mode="livesum",
)
POOL_REFRESH_SECONDS = 5.0


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


@contextmanager
def exporting(services: Services) -> Iterator[None]:
    """Count ``services``' dashboard reads, follow their circuit breakers, and
    report their database pool."""
    with ExitStack() as stack:
        if services.pool_stats is not None:
            follower = asyncio.get_running_loop().create_task(_follow_pool(services.pool_stats))
            stack.callback(follower.cancel)
        if services.dashboards is not None:
            stack.callback(_attached(services.dashboards.observers, _count_lookup))
        for name, breaker in services.breakers.items():
            gauge = CIRCUIT_STATE.labels(name)
            gauge.set(breaker.state.level)

            def follow(state: BreakerState, gauge: Gauge = gauge) -> None:
                gauge.set(state.level)

            stack.callback(_attached(breaker.listeners, follow))
        yield


def _count_lookup(kind: str, outcome: Lookup) -> None:
    DASHBOARD_CACHE.labels(kind, outcome.value).inc()


def _attached(observers: list[T], observer: T) -> Callable[[], None]:
    """Add ``observer``; return what removes it again."""
    observers.append(observer)
    return lambda: observers.remove(observer)
