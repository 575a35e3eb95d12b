"""The response headers that are part of the API, in the OpenAPI document: the
session cookies an operation sets or clears, ``Retry-After`` on every 429 and 503,
``WWW-Authenticate`` on every 401 (``problems.py`` sends them)."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import ResponseHeader
from litestar.openapi.spec import OpenAPIHeader, OpenAPIResponse, OpenAPIType, Schema
from litestar.routes import HTTPRoute

from engage_http.cookies import ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE, REFRESH_PATH

SETS_SESSION_COOKIES = [
    ResponseHeader(
        name="Set-Cookie",
        documentation_only=True,
        description=f"A browser session (not for a bearer token or a challenge): {ACCESS_COOKIE}"
        " (HttpOnly, SameSite=Lax, Max-Age the access token's life), "
        f"{REFRESH_COOKIE} (HttpOnly, SameSite=Strict, path {REFRESH_PATH}), and"
        f" {CSRF_COOKIE} when the request had none (readable by the page, which echoes it"
        " as X-CSRFToken); one Set-Cookie header each",
    )
]
CLEARS_SESSION_COOKIES = [
    ResponseHeader(
        name="Set-Cookie",
        documentation_only=True,
        description=f"{ACCESS_COOKIE} and {REFRESH_COOKIE} cleared (expired), one header each",
    )
]

_SECONDS = Schema(type=OpenAPIType.INTEGER, minimum=1)
_TEXT = Schema(type=OpenAPIType.STRING)
_ERROR_HEADERS: dict[str, dict[str, OpenAPIHeader]] = {
    "401": {
        "WWW-Authenticate": OpenAPIHeader(
            schema=_TEXT, required=True, description='Bearer realm="engage"'
        )
    },
    "429": {
        "Retry-After": OpenAPIHeader(
            schema=_SECONDS, required=True, description="Seconds until a new attempt may pass"
        )
    },
    "503": {
        "Retry-After": OpenAPIHeader(
            schema=_SECONDS, required=True, description="Seconds to wait before trying again"
        )
    },
}


def document_headers(app: Litestar) -> None:
    """In ``app``'s document, every 401, 429 and 503 names the header it carries,
    and every 2xx of an operation the headers its handler declares for the
    document (Litestar puts those on a generated success response only, not on
    a 204 the handler describes itself)."""
    document = app.openapi_schema
    for route in app.routes:
        item = (document.paths or {}).get(route.path_format)
        if not isinstance(route, HTTPRoute) or item is None:
            continue
        for handler in route.route_handlers:
            declared = {
                header.name: OpenAPIHeader(schema=_TEXT, description=header.description)
                for header in handler.response_headers or ()
                if header.documentation_only
            }
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                for status, response in (operation.responses or {}).items() if operation else ():
                    wanted = declared if status.startswith("2") else _ERROR_HEADERS.get(status)
                    if wanted and isinstance(response, OpenAPIResponse):
                        response.headers = {**(response.headers or {}), **wanted}
