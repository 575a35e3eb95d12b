"""engage_http: the Litestar HTTP API (``create_app``).

Importing this package imports nothing else: ``engage serve`` reads the name
below before its workers start, and must not import prometheus_client early
(see ``engage_http.asgi``).
"""

# Set by `engage serve` for its workers: the address it binds to (for the
# Secure-cookie default).
BIND_HOST_VARIABLE = "_ENGAGE_SERVE_BIND_HOST"
