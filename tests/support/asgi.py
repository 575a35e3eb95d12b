"""A request straight through the app's ASGI callable, with the body messages and
headers a test chooses (chunks, a disconnect before the end, a header over two
lines): what no HTTP client can send."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient


def post_through_asgi(
    client: AsyncTestClient[Litestar],
    path: str,
    incoming: Iterable[dict[str, Any]],
    headers: Iterable[tuple[bytes, bytes]],
    *,
    method: str = "POST",
) -> list[dict[str, Any]]:
    """POST (or ``method``) to ``path`` on the client's app (on its own event loop),
    with ``headers`` as given (a name may repeat, as no HTTP client library sends
    it), its body read from ``incoming`` and then ``http.disconnect``; every
    message the app sent."""
    messages = deque(incoming)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.popleft() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver.local"), *headers],
        "client": ("testclient", 50000),
        "server": ("testserver.local", 80),
    }
    client.blocking_portal.call(client.app, scope, receive, send)
    return sent
