"""A response that goes on after its middleware chain has returned: the live stream.

A stream is open for hours. Sent from inside the chain, it would keep every
layer suspended for as long (Litestar's app, exception and routing layers, the
request id, route metrics and CSRF middleware: their frames, closures and the
parsed request, about 5 KiB a stream; bench/README.md). So the stream sends its
head through the chain, as any response does (the headers every layer adds),
then hands the rest of itself over with ``detach`` and returns; ``run_detached``,
outside all of them (Litestar's own ``__call__`` included: ``app.py``), runs that
rest once the chain has unwound, sending with the server's own ``send``: the
rest's body messages pass no layer and no ``before_send`` hook (``headers.py``'s
acts on heads, and on the body of a refused CORS preflight, never a stream's).

What a middleware does when a response ends (the access log line, the
in-progress gauge and the request counters) must wait for the stream's end
too: in its ``finally`` it calls ``defer(scope, finish, *args)``, which keeps
``finish(*args)`` for ``run_detached`` to call after the stream (innermost layer first,
as the ``finally`` blocks would have run), or returns False when the response
ended with the chain (then the middleware finishes at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

_KEY = "engage.detached"
_OFFERED = object()  # in the scope while run_detached, outside, would run a detached rest


class Rest(Protocol):
    """What a response hands over: the rest of it, run outside the chain."""

    async def resume(self, receive: Receive, send: Send) -> None:
        """Send the rest of the response."""

    async def abandon(self) -> None:
        """Let go of what it holds: the chain failed after the rest was handed over."""


class _Detached:
    __slots__ = ("finishers", "rest")

    def __init__(self, rest: Rest) -> None:
        self.rest = rest
        # (finish, args): lighter than a partial each (no dict of keywords)
        self.finishers: list[tuple[Callable[..., object], tuple[Any, ...]]] = []


def detach(scope: Scope, rest: Rest) -> bool:
    """Have ``rest`` run once the middleware chain has returned. False when nothing
    outside the chain would run it: the caller sends it itself."""
    state = cast("dict[str, Any]", scope)
    if state.get(_KEY) is not _OFFERED:
        return False
    state[_KEY] = _Detached(rest)
    return True


def defer(scope: Scope, finish: Callable[..., object], *args: Any) -> bool:
    """In a middleware's ``finally``: when the response goes on outside the chain,
    keep ``finish(*args)`` for its end and return True; otherwise False (the
    caller finishes now)."""
    detached = cast("dict[str, Any]", scope).get(_KEY)
    if type(detached) is not _Detached:
        return False
    detached.finishers.append((finish, args))
    return True


async def run_detached(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """``app`` (the whole chain, Litestar's own layer included), then the rest of a
    response detached in it, then what the middlewares deferred to its end."""
    if scope["type"] != ScopeType.HTTP:
        await app(scope, receive, send)
        return
    state = cast("dict[str, Any]", scope)
    state[_KEY] = _OFFERED
    try:
        await app(scope, receive, send)
    except BaseException:
        detached = state.pop(_KEY, None)
        if type(detached) is _Detached:
            try:
                await detached.rest.abandon()
            finally:
                _finish(detached)
        raise
    detached = state.pop(_KEY, None)
    if type(detached) is not _Detached:
        return
    try:
        await detached.rest.resume(receive, send)
    finally:
        _finish(detached)


def _finish(detached: _Detached, first: int = 0) -> None:
    """Each finisher in turn, each also when one before it raised (as ``finally`` blocks)."""
    if first < len(detached.finishers):
        finish, args = detached.finishers[first]
        try:
            finish(*args)
        finally:
            _finish(detached, first + 1)
