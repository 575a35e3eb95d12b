"""The web app: the pages and ES modules under ``engage_http/web``, served at ``/``.

No build step: the files are read once per process, gzipped once, and served
from memory. Assets live under ``/assets/<version>/``, where the version is a
hash of all of them, so a browser may keep them for a year; the page itself
(one ``index.html`` for every page path, the client-side router picks the
page) is revalidated on each visit by its ETag.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from attrs import frozen
from litestar import HttpMethod, Request, Response, route
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from engage_adapters.bootstrap import HttpPolicy

WEB_ROOT = Path(__file__).parent / "web"
ASSETS = "/assets"
# Paths the client-side router shows a page for (web/js/routes.js); the server
# answers each with index.html. A page added there is added here.
PAGE_PATHS = (
    "/",
    "/signin",
    "/signup",
    "/account",
    "/sessions",
    "/second-factor",
    "/activity",
    "/api-keys",
    "/change-email",
    "/verify-email",
    "/confirm-email",
    "/forgot-password",
    "/reset-password",
)
_VERSION_PLACEHOLDER = "__ASSETS__"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


@frozen
class StaticFile:
    """One file as sent: its bytes, gzipped too where that makes them smaller, with an
    ETag for each."""

    media_type: str
    plain: bytes
    gzipped: bytes | None
    etag: str

    @classmethod
    def of(cls, name: str, content: bytes) -> StaticFile:
        digest = hashlib.sha256(content).hexdigest()[:20]
        # mtime=0: the same bytes in every process, so every worker sends the same ETag.
        packed = gzip.compress(content, compresslevel=9, mtime=0)
        return cls(
            media_type=_MEDIA_TYPES[Path(name).suffix],
            plain=content,
            gzipped=packed if len(packed) < len(content) else None,  # not for a PNG
            etag=f'"{digest}"',
        )

    def response(self, request: Request[Any, Any, Any], cache_control: str) -> Response[bytes]:
        gzipped = self.gzipped if accepts_gzip(request.headers.get("accept-encoding", "")) else None
        etag = self.etag if gzipped is None else self.etag[:-1] + '-gz"'
        headers = {
            **SECURITY_HEADERS,
            "Cache-Control": cache_control,
            "ETag": etag,
            "Vary": "Accept-Encoding",
        }
        # A list header may come over several lines (RFC 9110, 5.3): the same as one.
        if _matches(", ".join(request.headers.getall("if-none-match", [])), etag):
            return Response(content=b"", status_code=304, headers=headers)
        if gzipped is not None:
            headers["Content-Encoding"] = "gzip"
        return Response(
            content=self.plain if gzipped is None else gzipped,
            media_type=self.media_type,
            headers=headers,
        )


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value takes a gzipped answer (RFC 9110, 12.5.3): gzip
    (else x-gzip, else ``*``) weighs more than 0 (``q=0`` is "not acceptable"), and not
    less than identity, where the value names identity or ``*``. A weight that is not one counts
    as 0: the file as it is is always safe to send, and so is it for no header at all.
    """
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, parameters = item.partition(";")
        if coding := coding.strip().lower():
            weights.setdefault(coding, _weight(parameters))
    anything = weights.get("*")
    gzip_weight = weights.get("gzip", weights.get("x-gzip", anything or 0.0))
    # ``*`` weighs every coding not named, identity too (RFC 9110, 12.5.3).
    return gzip_weight > 0 and gzip_weight >= weights.get("identity", anything or 0.0)


_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def _weight(parameters: str) -> float:
    """The q of a coding's parameters: 1 without one, 0 for one that is not a weight."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            return float(value.strip()) if _QVALUE.fullmatch(value.strip()) else 0.0
    return 1.0


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether If-None-Match names ``etag`` (weakly), or is ``*``: any current file."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",") if tag.strip()}
    return etag in tags or "*" in tags


# What a file route answers: HEAD too (the same headers, no body: head.py) and OPTIONS.
FILE_METHODS = [HttpMethod.GET, HttpMethod.HEAD, HttpMethod.OPTIONS]
_FILE_ALLOW = ", ".join(FILE_METHODS)


def send_file(
    request: Request[Any, Any, Any], files: Mapping[str, StaticFile], name: str, cache_control: str
) -> Response[bytes]:
    """The file ``name`` of ``files``, or a 404. Only files read at start-up are sent:
    no request path reaches the file system. OPTIONS says what the file answers."""
    file = files.get(name.lstrip("/"))
    if file is None:
        raise NotFoundException()
    if request.method == HttpMethod.OPTIONS:
        return Response(content=b"", status_code=204, headers={"Allow": _FILE_ALLOW})
    return file.response(request, cache_control)


@frozen
class WebBundle:
    """Every file of the web app, and the version its asset URLs carry."""

    version: str
    index: StaticFile
    assets: dict[str, StaticFile]

    @classmethod
    def load(cls, root: Path = WEB_ROOT) -> WebBundle:
        files = {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.suffix in _MEDIA_TYPES
        }
        index = files.pop("index.html")
        hashed = hashlib.sha256()
        for name, content in files.items():
            hashed.update(name.encode() + b"\0" + content + b"\0")
        version = hashed.hexdigest()[:12]
        page = index.replace(_VERSION_PLACEHOLDER.encode(), f"{ASSETS}/{version}".encode())
        return cls(
            version=version,
            index=StaticFile.of("index.html", page),
            assets={name: StaticFile.of(name, content) for name, content in files.items()},
        )


@cache
def bundle() -> WebBundle:
    return WebBundle.load()


# Every page path is there: Litestar's own OPTIONS answer (app.py's _options) is true.
@route(
    list(PAGE_PATHS),
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    include_in_schema=False,
    sync_to_thread=False,
)
def page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """index.html for every page path; the router in web/js/main.js shows the page."""
    return bundle().index.response(request, REVALIDATE)


@route(
    f"{ASSETS}/{{version:str}}/{{name:path}}",
    http_method=FILE_METHODS,
    include_in_schema=False,
    sync_to_thread=False,
)
def asset(
    request: Request[Any, Any, Any], version: FromPath[str], name: FromPath[str]
) -> Response[bytes]:
    """A script, style sheet or image; cached for good under the current version."""
    web = bundle()
    # A page from another release (a rolling deploy) still gets a file, but not for keeps.
    return send_file(request, web.assets, name, IMMUTABLE if version == web.version else REVALIDATE)


# Paths that are never a page: what is missing under them is the API's 404 problem.
_NOT_PAGES = ("/api/", f"{ASSETS}/", "/schema")


def missing_page(
    request: Request[Any, Any, Any], exc: Exception, policy: HttpPolicy
) -> Response[bytes] | None:
    """For a browser's visit to an address that is no page (a typo, an old link): the
    app's page with status 404, whose router says "Page not found" and links home.
    None for anything else (an API client's request, a missing asset): the problem."""
    if not (
        policy.web
        and isinstance(exc, NotFoundException)
        and request.method in (HttpMethod.GET, HttpMethod.HEAD)
        and "text/html" in request.headers.get("accept", "")
        and not request.url.path.startswith(_NOT_PAGES)
    ):
        return None
    index = bundle().index
    gzipped = index.gzipped if accepts_gzip(request.headers.get("accept-encoding", "")) else None
    headers = {**SECURITY_HEADERS, "Cache-Control": REVALIDATE, "Vary": "Accept, Accept-Encoding"}
    if gzipped is not None:
        headers["Content-Encoding"] = "gzip"
    return Response(
        content=index.plain if gzipped is None else gzipped,
        status_code=404,
        media_type=index.media_type,
        headers=headers,
    )


def web_routes(policy: HttpPolicy) -> list[HTTPRouteHandler]:
    """The page and asset routes, or none when ENGAGE_WEB is off."""
    if not policy.web:
        return []
    bundle()  # read and compress the files at start-up, not on the first visit
    return [page, asset]
