"""The ASGI entry point for servers: ``engage_http.asgi:app`` (a factory call for granian)."""

from __future__ import annotations

import os

from litestar import Litestar

from engage_adapters.bootstrap import build_services, derive_key
from engage_adapters.settings import load_settings, resolve_jwt_secret
from engage_http import BIND_HOST_VARIABLE
from engage_http.app import create_app
from engage_http.auth import HttpPolicy
from engage_http.observability import configure_logging, init_sentry
from engage_http.prometheus import require_shared_metrics


def app_from_environment() -> Litestar:
    """Each worker process calls this once: settings, logs, Sentry, then the app."""
    require_shared_metrics()
    settings = load_settings()
    configure_logging(settings.log_level)
    init_sentry(settings.sentry_dsn)
    secret = resolve_jwt_secret(settings)
    policy = HttpPolicy(
        cookie_secure=settings.cookies_secure_for(os.environ.get(BIND_HOST_VARIABLE, "0.0.0.0")),  # noqa: S104
        cors_origins=settings.cors_origins,
        auth_rate_per_minute=settings.auth_rate_per_minute,
        csrf_secret=derive_key(secret, "csrf").hex(),
        trusted_proxies=settings.trusted_proxies,
        web=settings.web,
    )
    return create_app(lambda: build_services(settings), policy)
