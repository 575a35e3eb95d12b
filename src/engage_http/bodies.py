"""A request body that ends before it should: the client hung up (499), or the
body's chunked framing is malformed (400); never a 500.

The server tells the app neither as such: granian ends such a body with an
``http.disconnect``, on which Litestar raises a 500 (``InternalServerException``).
``watching`` notes in the scope which it was, for ``problems.render`` to answer:

- A body of a declared Content-Length can only end early when the connection
  does (the server reads exactly that many bytes): the client is gone. Its
  answer is recorded as 499 (nginx's "client closed request") in the access log
  and the metrics, and never sent (``observability.RequestIdMiddleware``).
- A chunked body ends early on a bad chunk size or chunk data longer than its
  size, the client still waiting: a 400. A client that hangs up in the middle
  of a chunked body looks the same, and is recorded as that 400 (a client's
  fault either way).
"""

from __future__ import annotations

from typing import Any, Literal, cast

from litestar.types import Receive, ReceiveMessage, Scope

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request its client gave up on
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CUT_SHORT = "engage.body_cut_short"

CutShort = Literal["client-gone", "malformed"]


def watching(scope: Scope, receive: Receive) -> Receive:
    """``receive``, noting in ``scope`` a disconnect before the body's last part."""
    ended = False

    async def receive_body() -> ReceiveMessage:
        nonlocal ended
        message = await receive()
        if not ended:
            if message["type"] == "http.request":
                ended = not message.get("more_body", False)
            elif message["type"] == "http.disconnect":
                ended = True
                cast("dict[str, Any]", scope)[_CUT_SHORT] = (
                    "malformed" if _is_chunked(scope) else "client-gone"
                )
        return message

    return receive_body


def cut_short(scope: Scope) -> CutShort | None:
    """How the request's body ended early, if it did."""
    how: CutShort | None = cast("dict[str, Any]", scope).get(_CUT_SHORT)
    return how


def _is_chunked(scope: Scope) -> bool:
    return any(
        name == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in scope["headers"]
    )
