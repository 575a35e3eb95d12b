"""What the OpenAPI document says beyond the handlers' signatures, and the docs page at /schema.

Handlers declare their error statuses with ``problems(...)``: every one is an
``application/problem+json`` body of the one ``Problem`` schema. The docs page
is Swagger UI 5 from the ``openapi-ui-bundles`` package, served by engage
itself and started by a script file, so it works offline and under a CSP that
allows no inline script. Only the files the page loads are served, from memory
(as ``webapp.py`` serves the web app's). (``swagger-ui-bundle`` ships Swagger UI 4, which
renders no OpenAPI 3.1 document.)
"""

from __future__ import annotations

import re
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import email_validator
import msgspec
from attrs import frozen
from litestar import Request, Response, Router, route
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIType,
    Reference,
    SecurityRequirement,
    SecurityScheme,
)
from litestar.params import FromPath
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.typing import FieldDefinition
from openapi_ui_bundles import swagger_ui

from engage_core.model import (
    MAX_EMAIL_LENGTH,
    MAX_METRIC_TYPE_LENGTH,
    MAX_NUMERIC_STRING_LENGTH,
    MAX_PASSWORD_LENGTH,
    METRIC_VALUE_BOUND,
    MIN_PASSWORD_LENGTH,
)
from engage_http.cookies import ACCESS_COOKIE, REFRESH_COOKIE
from engage_http.webapp import FILE_METHODS, IMMUTABLE, REVALIDATE, StaticFile, send_file

PROBLEM_MEDIA_TYPE = "application/problem+json"
SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"
# The bundle's release is in every Swagger UI URL: a new one is a new URL.
SWAGGER_UI = f"{SCHEMA_PATH}/swagger-ui-{version('openapi-ui-bundles')}"
_OWN_ASSETS = Path(__file__).parent / "docs"


class ProblemField(msgspec.Struct):
    field: Annotated[str, msgspec.Meta(examples=["metric_value", "items.3.recorded_at"])]
    message: str


class Problem(msgspec.Struct):
    """An RFC 9457 problem: what went wrong, and for validation, each field at fault."""

    type: Annotated[str, msgspec.Meta(examples=["urn:engage-suite:problem:validation-failed"])]
    title: str
    status: Annotated[int, msgspec.Meta(ge=400, le=599)]
    detail: str
    errors: list[ProblemField] | msgspec.UnsetType = msgspec.UNSET


# --- the rules, as schema constraints ---------------------------------------------
# The core checks them (every field at once, in its own words); these only document them.

# MetricType's rule: a letter or digit, then letters, digits and _ . : -
METRIC_TYPE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
METRIC_TYPE_SCHEMA: dict[str, Any] = {
    "min_length": 1,
    "max_length": MAX_METRIC_TYPE_LENGTH,
    "pattern": METRIC_TYPE_PATTERN,
}
EMAIL_SCHEMA: dict[str, Any] = {
    "format": "email",
    "max_length": MAX_EMAIL_LENGTH,
    # email-validator refuses special-use domains (a@b.test), whatever their letter case.
    "pattern": "^(?!.*[@.](?:{})$)".format(
        "|".join(
            "".join(f"[{c}{c.upper()}]" if c.isalpha() else re.escape(c) for c in name)
            for name in sorted(email_validator.SPECIAL_USE_DOMAIN_NAMES)
        )
    ),
}
PASSWORD_SCHEMA: dict[str, Any] = {
    "min_length": MIN_PASSWORD_LENGTH,
    "max_length": MAX_PASSWORD_LENGTH,
}
# MetricValue's rule: a number, or its plain decimal text, below 10^15 in magnitude. Its
# text may also carry an exponent, which no pattern can bound (1e14 passes, 10e14 not).
METRIC_VALUE_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "number",
        "exclusiveMinimum": -float(METRIC_VALUE_BOUND),
        "exclusiveMaximum": float(METRIC_VALUE_BOUND),
    },
    {
        "type": "string",
        "maxLength": MAX_NUMERIC_STRING_LENGTH,
        # At most 15 digits before the point once leading zeros are gone: below 10^15.
        "pattern": "^[+-]?(0*[0-9]{1,15}(\\.[0-9]*)?|\\.[0-9]+)$",
    },
]
MOMENT_SCHEMA: dict[str, Any] = {"format": "date-time"}
# IdempotencyGuard's rule: 1 to 255 printable ASCII characters, no spaces.
IDEMPOTENCY_KEY_SCHEMA: dict[str, Any] = {"pattern": "^[!-~]{1,255}$"}
NUMBER_SCHEMA: dict[str, Any] = {"type": OpenAPIType.NUMBER}


def query_text(**schema: Any) -> dict[str, Any]:
    """``schema_extra`` for an optional text query parameter: a string, or absent (no null)."""
    return {"one_of": None, "type": OpenAPIType.STRING, **schema}


def documented(**schema: Any) -> dict[str, Any]:
    """A msgspec ``Meta(extra_json_schema=...)`` that Litestar writes into the document."""
    return {"extra": schema}


class ClosedStructSchemaPlugin(StructSchemaPlugin):
    """A Struct that refuses unknown fields says so: ``additionalProperties: false``.

    Litestar's own plugin (which this extends, from a private module: Litestar 2
    exports none) leaves every object open, so a client would think extra fields pass.
    """

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return super().is_plugin_supported_field(field_definition) and bool(
            field_definition.type_.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Any:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


_MEANINGS = {
    400: "Malformed JSON, or a query or path parameter at fault "
    "(invalid-query or invalid-path, with the fields)",
    401: "No valid credentials, or their session has ended",
    403: "Refused: a cookie-authenticated change without X-CSRFToken, a foreign Origin, "
    "a wrong password, or an API key without the scope the operation needs",
    404: "No such resource",
    409: "Conflict: the email is taken, or a request with this Idempotency-Key is running",
    413: "The body is over 1 MiB",
    415: "A body that is not application/json, or one with a Content-Encoding other than identity",
    422: "The body is valid JSON but not a valid request (validation-failed, with the fields)",
    429: "Too many attempts; Retry-After says when to try again",
    503: "The database is unreachable; Retry-After says when to try again",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The error answers of an operation, each a problem+json body."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=_MEANINGS[status],
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in statuses
    }


class ParameterProblems(ReceiveRoutePlugin):
    """An operation with path parameters or a body documents its 400 as a problem.

    Litestar documents a plain application/json 400 for any such operation whose
    handler declares none; engage answers every 400 as a problem, so say that.
    """

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            takes_body = "data" in handler.parsed_fn_signature.parameters
            declared = handler.responses or {}
            if (route.path_parameters or takes_body) and 400 not in declared:
                handler.responses = {**declared, **problems(400)}


def no_content(description: str) -> dict[int, ResponseSpec]:
    """A 204 documented as what it is: no body (Litestar would describe ``Response[None]``'s)."""
    return {204: ResponseSpec(data_container=None, description=description)}


# Statuses shared by kinds of operation.
JSON_BODY = (400, 413, 415, 422)  # a request with a JSON body
BODYLESS_POST = (413, 415)  # a POST without one still refuses a body that is not JSON
SIGNED_IN = (401, 503)  # an authenticated request: its session is checked
CHANGE = (403,)  # a change authenticated by cookie needs X-CSRFToken

# Who may call: a bearer token or the access cookie; a change by cookie also sends the CSRF header.
READ_SECURITY: list[SecurityRequirement] = [{"bearer": []}, {"cookie": []}]
CHANGE_SECURITY: list[SecurityRequirement] = [{"bearer": []}, {"cookie": [], "csrf": []}]
REFRESH_SECURITY: list[SecurityRequirement] = [{"refresh": [], "csrf": []}]
# The metrics endpoints also take an API key (metrics:read to read, metrics:write to record).
KEY_READ_SECURITY: list[SecurityRequirement] = [*READ_SECURITY, {"api_key": []}]
KEY_CHANGE_SECURITY: list[SecurityRequirement] = [*CHANGE_SECURITY, {"api_key": []}]
KEY = (403, 429)  # an API key without the scope, or past its rate

_SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    "bearer": SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="An access token from POST /api/auth/token",
    ),
    "cookie": SecurityScheme(
        type="apiKey",
        name=ACCESS_COOKIE,
        security_scheme_in="cookie",
        description="The access cookie that POST /api/auth/login sets",
    ),
    "refresh": SecurityScheme(
        type="apiKey",
        name=REFRESH_COOKIE,
        security_scheme_in="cookie",
        description="The refresh cookie (path /api/auth) that login and refresh set",
    ),
    "api_key": SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="engk_<id>_<secret>",
        description="An API key from POST /api/keys: the metrics endpoints only, within its "
        "scopes (metrics:read, metrics:write), ENGAGE_KEY_RATE_PER_MINUTE requests a minute",
    ),
    "csrf": SecurityScheme(
        type="apiKey",
        name="X-CSRFToken",  # CSRF_HEADER, as the contract spells it
        security_scheme_in="header",
        description="The csrftoken cookie's value, echoed; needed with cookies, not with a bearer",
    ),
}


# --- the docs page ------------------------------------------------------------------


class OfflineSwaggerPlugin(SwaggerRenderPlugin):
    """Swagger UI at /schema from engage's own assets; the page has no inline script."""

    def __init__(self) -> None:
        super().__init__(
            js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            css_url=f"{SWAGGER_UI}/swagger-ui.css",
            standalone_preset_js_url=f"{SWAGGER_UI}/swagger-ui-standalone-preset.js",
            path="/",
            favicon=f'<link rel="icon" type="image/png" href="{SWAGGER_UI}/favicon-32x32.png">',
            style=f'<link rel="stylesheet" href="{ASSETS_PATH}/docs.css">',
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = msgspec.json.encode(openapi_schema["info"]["title"]).decode()[1:-1]
        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_html_text(title)}</title>
{self.favicon}
<link rel="stylesheet" href="{self.css_url}">
{self.style}
</head>
<body>
<div id="swagger-ui" data-openapi-url="{self.get_openapi_json_route(request)}"></div>
<script src="{self.js_url}"></script>
<script src="{ASSETS_PATH}/docs.js"></script>
</body>
</html>
"""
        return page.encode()

    def receive_router(self, router: Router) -> None:
        """No oauth2-redirect.html page (inline script, and the API has no OAuth2 flow)."""


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# The docs page runs only engage's own files (Swagger UI's, docs.js); its CSS draws
# its icons from data: URLs.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none';"
    " form-action 'self'"
)


def _unknown_schema_page(response: Response[Any]) -> Response[Any]:
    """Litestar answers unknown /schema paths with an HTML 404: make it the API's problem.
    The docs page gets its Content-Security-Policy."""
    if response.status_code == 404:
        raise NotFoundException(f"no such page under {SCHEMA_PATH}")
    if str(response.media_type).startswith("text/html"):
        response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


# The bundle's files that the docs page loads (OfflineSwaggerPlugin.render); its others,
# the demo index.html (an inline script, the petstore's API) among them, are not served.
_SWAGGER_UI_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


@frozen
class DocsFiles:
    """The files the docs page loads: Swagger UI's and its own (docs/)."""

    swagger_ui: dict[str, StaticFile]
    own: dict[str, StaticFile]

    @classmethod
    def load(cls) -> DocsFiles:
        bundled = Path(swagger_ui.static_path)
        return cls(
            swagger_ui={
                name: StaticFile.of(name, (bundled / name).read_bytes())
                for name in _SWAGGER_UI_FILES
            },
            own={
                path.name: StaticFile.of(path.name, path.read_bytes())
                for path in sorted(_OWN_ASSETS.iterdir())
                if path.is_file()
            },
        )


@cache
def docs_files() -> DocsFiles:
    return DocsFiles.load()


@route(
    f"{SWAGGER_UI}/{{name:path}}",
    http_method=FILE_METHODS,
    include_in_schema=False,
    sync_to_thread=False,
)
def swagger_ui_file(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """A file of Swagger UI: its release is in the URL, so it is kept for good."""
    return send_file(request, docs_files().swagger_ui, name, IMMUTABLE)


@route(
    f"{ASSETS_PATH}/{{name:path}}",
    http_method=FILE_METHODS,
    include_in_schema=False,
    sync_to_thread=False,
)
def docs_asset(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """docs.js or docs.css: the same URL in every release, so revalidated by its ETag."""
    return send_file(request, docs_files().own, name, REVALIDATE)


def docs_assets() -> list[HTTPRouteHandler]:
    """The routes of the docs page's files, read and compressed here, at start-up."""
    docs_files()
    return [swagger_ui_file, docs_asset]


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="engage-suite",
        version=_version(),
        description=(
            "User accounts and per-user engagement metrics. Errors are RFC 9457 problem "
            "details (application/problem+json)."
        ),
        path=SCHEMA_PATH,
        render_plugins=[OfflineSwaggerPlugin()],
        openapi_router=Router(
            SCHEMA_PATH,
            route_handlers=[],
            include_in_schema=False,
            after_request=_unknown_schema_page,
        ),
        components=Components(security_schemes=_SECURITY_SCHEMES),
    )


def _version() -> str:
    try:
        return version("engage-suite")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0"
