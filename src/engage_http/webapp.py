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
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"


@frozen
class StaticFile:
    """One file as sent: plain and gzipped bytes, with an ETag for each."""

    media_type: str
    plain: bytes
    gzipped: bytes
    etag: str

    @classmethod
    def of(cls, name: str, content: bytes) -> StaticFile:
        digest = hashlib.sha256(content).hexdigest()[:20]
        return cls(
            media_type=_MEDIA_TYPES[Path(name).suffix],
            plain=content,
            # mtime=0: the same bytes in every process, so every worker sends the same ETag.
            gzipped=gzip.compress(content, compresslevel=9, mtime=0),
            etag=f'"{digest}"',
        )

    def response(self, request: Request[Any, Any, Any], cache_control: str) -> Response[bytes]:
        wants_gzip = "gzip" in request.headers.get("accept-encoding", "").lower()
        etag = self.etag[:-1] + '-gz"' if wants_gzip else self.etag
        headers = {
            **SECURITY_HEADERS,
            "Cache-Control": cache_control,
            "ETag": etag,
            "Vary": "Accept-Encoding",
        }
        if etag in _etags(request.headers.get("if-none-match", "")):
            return Response(content=b"", status_code=304, headers=headers)
        if wants_gzip:
            headers["Content-Encoding"] = "gzip"
        return Response(
            content=self.gzipped if wants_gzip else self.plain,
            media_type=self.media_type,
            headers=headers,
        )


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


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


# HEAD too: the same headers, no body (Litestar leaves it out).
_READ = [HttpMethod.GET, HttpMethod.HEAD]


@route(list(PAGE_PATHS), http_method=_READ, include_in_schema=False, sync_to_thread=False)
def page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """index.html for every page path; the router in web/js/main.js shows the page."""
    return bundle().index.response(request, _REVALIDATE)


@route(
    f"{ASSETS}/{{version:str}}/{{name:path}}",
    http_method=_READ,
    include_in_schema=False,
    sync_to_thread=False,
)
def asset(
    request: Request[Any, Any, Any], version: FromPath[str], name: FromPath[str]
) -> Response[bytes]:
    """A script, style sheet or image; cached for good under the current version."""
    web = bundle()
    file = web.assets.get(name.lstrip("/"))
    if file is None:
        raise NotFoundException()
    # A page from another release (a rolling deploy) still gets a file, but not for keeps.
    return file.response(request, _IMMUTABLE if version == web.version else _REVALIDATE)


def web_routes(policy: HttpPolicy) -> list[HTTPRouteHandler]:
    """The page and asset routes, or none when ENGAGE_WEB is off."""
    if not policy.web:
        return []
    bundle()  # read and compress the files at start-up, not on the first visit
    return [page, asset]
