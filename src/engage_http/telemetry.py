"""Application metrics for Prometheus, beside the per-route ones of Litestar's plugin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter

from engage_core.errors import RateLimited, Unauthorized, ValidationFailed

LOGINS = Counter(
    "engage_logins_total",
    "Login attempts by flavour (browser, token, refresh) and outcome",
    ["flavour", "outcome"],
)


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
