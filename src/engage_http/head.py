"""HEAD for every GET (RFC 9110, 9.3.2): answered as the GET would be, every header
included, without the body. Not for the live stream, whose GET never ends."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from litestar.types import Message, Scope, Send

# In the scope of a HEAD answered as a GET: the access log says HEAD.
HEAD = "engage.head"
_NO_HEAD = frozenset({"/api/dashboard/stream"})
_BODY = frozenset({"http.response.body", "http.response.pathsend", "http.response.zerocopysend"})


def as_get(scope: Scope) -> Scope | None:
    """The scope of the GET to answer a HEAD with; None for any other request."""
    fields = cast("dict[str, Any]", scope)
    if fields["type"] != "http" or fields["method"] != "HEAD" or fields["path"] in _NO_HEAD:
        return None
    return cast("Scope", {**fields, "method": "GET", HEAD: True})


def with_head(methods: Iterable[str], path: str) -> list[str]:
    """``methods`` (an Allow header's) of ``path``, with HEAD wherever GET is answered."""
    named = {method.strip() for method in methods}
    if "GET" in named and path not in _NO_HEAD:
        named.add("HEAD")
    return sorted(named)


def without_body(send: Send) -> Send:
    """``send`` for a HEAD: the GET's head as it is (its Content-Length too), then an
    empty body in place of the GET's."""
    ended = False

    async def send_head(message: Message) -> None:
        nonlocal ended
        if message["type"] not in _BODY:
            await send(message)
        elif not ended:
            ended = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return send_head
