"""The ASGI entry point for servers: ``engage_http.asgi:app`` (a factory call for granian)."""

from __future__ import annotations

import os

from litestar import Litestar

from engage_adapters.bootstrap import ANSWER_WITHIN, build_services, http_policy
from engage_adapters.settings import load_settings
from engage_http import BIND_HOST_VARIABLE
from engage_http.app import create_app
from engage_http.observability import configure_logging, init_sentry
from engage_http.prometheus import require_shared_metrics


def app_from_environment() -> Litestar:
    """Each worker process calls this once: settings, logs, Sentry, then the app."""
    require_shared_metrics()
    settings = load_settings()
    configure_logging(settings.log_level)
    init_sentry(settings.sentry_dsn)
    bind_host = os.environ.get(BIND_HOST_VARIABLE, "0.0.0.0")  # noqa: S104
    # A request never waits on a database that holds its connection and answers nothing.
    return create_app(
        lambda: build_services(settings, answer_within=ANSWER_WITHIN),
        http_policy(settings, bind_host=bind_host),
    )
