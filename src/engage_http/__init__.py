"""engage_http: the Litestar HTTP API (``create_app``)."""
