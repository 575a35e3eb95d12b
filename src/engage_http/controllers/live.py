"""GET /api/dashboard/stream: the caller's new metrics as server-sent events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, Any, cast

from litestar import Controller, get
from litestar.di import Provide
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp, Empty, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from engage_core.errors import FieldError, Unauthorized, ValidationFailed
from engage_core.model import EngagementMetric, Grant, GrantId
from engage_core.services.api_keys import KeyPrincipal
from engage_core.services.auth import AuthService
from engage_core.services.live import LiveMetrics, Stream, StreamEvent
from engage_http.dependencies import Injected
from engage_http.detached import detach
from engage_http.dto import MetricOut, encode
from engage_http.openapi import (
    KEY,
    KEY_READ_SECURITY,
    METRIC_TYPE_SCHEMA,
    SIGNED_IN,
    problems,
    query_text,
)
from engage_http.principal import Caller, CurrentCaller, provide_caller
from engage_http.problems import BadQuery
from engage_http.stopping import STOPPING

# How long a browser's EventSource waits before it reconnects (milliseconds).
RECONNECT_AFTER_MS = 2000
_METRIC_ID = {"one_of": None, "type": "integer", "minimum": 0}

MetricTypeFilter = Annotated[
    str | None,
    QueryParameter(
        description="Only this metric type", schema_extra=query_text(**METRIC_TYPE_SCHEMA)
    ),
]
After = Annotated[
    str | None,
    QueryParameter(
        description="Resume after this metric id (as Last-Event-ID does; the header wins)",
        schema_extra=_METRIC_ID,
    ),
]
LastEventId = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        required=False,
        description="The id of the last event received: every metric after it comes first",
        schema_extra=_METRIC_ID,
    ),
]


async def _grant_of(auth: AuthService, caller: Caller) -> Grant:
    """What authorised the stream: an API key, or a signed-in device's session
    (its family: a refresh does not end the stream, a logout does)."""
    if isinstance(caller, KeyPrincipal):
        return Grant(GrantId("key", caller.key_id), caller.user_id, caller.expires_at)
    session = await auth.sessions.get(caller.session_id)
    if session is None:
        raise Unauthorized("authentication required", reason="session gone")
    return Grant(GrantId("family", session.family_id), caller.user_id, session.expires_at)


# Frames as Litestar's ServerSentEventMessage writes them (lines end in CRLF; the
# JSON has no line breaks to split).
_HEARTBEAT_FRAME = b": keep-alive\r\n\r\n"
# The frames of the latest metric events, by the event: one user's streams are all
# handed the same event objects, so each metric is encoded once, not once per stream.
_METRIC_FRAMES: dict[int, tuple[StreamEvent, bytes]] = {}
_METRIC_FRAMES_KEPT = 256


def _frame(event: StreamEvent) -> bytes:
    """The event as a server-sent-event frame."""
    if event.kind == "metric" and event.metric is not None:
        return _metric_frame(event, event.metric)
    if event.kind == "backfill":
        body = encode({"count": event.count, "last_id": event.id})
        return b"%sevent: backfill\r\ndata: %s\r\n\r\n" % (_id_line(event.id), body)
    if event.kind == "position":
        # Sets the client's Last-Event-ID before any metric, so a reconnect resumes from here.
        body = encode({"after": event.id})
        return b"%sevent: position\r\ndata: %s\r\nretry: %d\r\n\r\n" % (
            _id_line(event.id),
            body,
            RECONNECT_AFTER_MS,
        )
    if event.kind == "end":
        return b"event: end\r\ndata: %s\r\n\r\n" % encode({"reason": event.reason})
    return _HEARTBEAT_FRAME


def _id_line(event_id: int | None) -> bytes:
    return b"" if event_id is None else b"id: %d\r\n" % event_id


def _metric_frame(event: StreamEvent, metric: EngagementMetric) -> bytes:
    # Keyed by identity, the event kept beside its frame: an id is not reused while cached.
    cached = _METRIC_FRAMES.get(id(event))
    if cached is not None and cached[0] is event:
        return cached[1]
    frame = b"id: %d\r\nevent: metric\r\ndata: %s\r\n\r\n" % (
        metric.id,
        encode(MetricOut.of(metric)),
    )
    if len(_METRIC_FRAMES) >= _METRIC_FRAMES_KEPT:
        _METRIC_FRAMES.clear()
    _METRIC_FRAMES[id(event)] = (event, frame)
    return frame


class _Departure:
    """Ends the stream when its client goes: ``receive`` is awaited beside the stream as
    a future with a callback, not in a task (nor a task group) of its own."""

    __slots__ = ("_receive", "_stream", "_waiting", "gone")

    def __init__(self, receive: Receive, stream: Stream) -> None:
        self._receive = receive
        self._stream = stream
        self._waiting: asyncio.Future[Any] | None = None
        self.gone = False
        self._listen()

    def _listen(self) -> None:
        self._waiting = asyncio.ensure_future(self._receive())
        self._waiting.add_done_callback(self._heard)

    def _heard(self, waiting: asyncio.Future[Any]) -> None:
        if waiting is not self._waiting or waiting.cancelled():
            return
        try:
            message = waiting.result()
        except Exception:  # the server lost the connection
            message = {"type": "http.disconnect"}
        if message["type"] == "http.disconnect":
            self.gone = True
            self._stream.end("disconnected")
        else:  # the (empty) request body: the disconnect comes next
            self._listen()

    def stop(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.done():
            waiting.cancel()


class _EventStream:
    """The stream's ASGI response: the head Litestar built for it (its status and
    headers) sent through the middleware chain, then each event's frame sent from the
    request's own task as it comes, from outside the chain once it has returned
    (``detached.py``: no layer stays suspended for the hours a stream is open)."""

    __slots__ = ("_head", "_live", "_stream")

    def __init__(self, head: ASGIResponse, live: LiveMetrics, stream: Stream) -> None:
        self._head: ASGIResponse | None = head
        self._live = live
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._send_head(scope, send) and not detach(scope, self):
            await self.resume(receive, send)  # nothing outside the chain runs it: from here

    async def _send_head(self, scope: Scope, send: Send) -> bool:
        """Its head; True when its events are to follow, else the stream is let go
        (also when the client left before the head went)."""
        follows = False
        try:
            head, self._head = self._head, None  # kept no longer than it is needed
            if head is None:
                raise RuntimeError("a stream's response is sent once")
            await head.start_response(send)
            if head.is_head_response:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                _forget_parsed_request(scope)
                follows = True
        finally:
            if not follows:
                await self.abandon()
        return follows

    async def resume(self, receive: Receive, send: Send) -> None:
        """Each event's frame as it comes, until the stream or its client ends."""
        departure = _Departure(receive, self._stream)
        events = cast("AsyncGenerator[StreamEvent]", self._live.events(self._stream))
        try:
            async for event in events:
                if departure.gone:
                    return
                try:
                    await send(
                        {"type": "http.response.body", "body": _frame(event), "more_body": True}
                    )
                except Exception:
                    if departure.gone:
                        return
                    raise
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            departure.stop()
            try:
                await events.aclose()  # as aclosing would, without its object a stream
            finally:
                await self.abandon()

    async def abandon(self) -> None:
        """Let the stream go."""
        self._live.close(self._stream)


def _forget_parsed_request(scope: Scope) -> None:
    """Drop what Litestar parsed of the request (its headers, cookies, query, URL,
    resolved dependencies and exception handlers) and keeps in the scope: a stream
    holds it for hours, and anything that needs it again parses it again."""
    state = ScopeState.from_scope(scope)
    state.headers = state.cookies = state.parsed_query = Empty
    state.url = state.base_url = state.accept = state.dependency_cache = Empty
    state.exception_handlers = Empty  # the route's, resolved for each request


class _NoContent:
    """An empty async iterable: the body Litestar's response would stream (it is not used)."""

    def __aiter__(self) -> _NoContent:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration


class _LiveEvents(ServerSentEvent):
    """Litestar's server-sent-event response (its headers), sending through ``_EventStream``."""

    def __init__(self, live: LiveMetrics, stream: Stream, *, headers: dict[str, str]) -> None:
        super().__init__((), headers=headers)
        self.iterator = _NoContent()
        self._live = live
        self._stream = stream

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIApp:  # type: ignore[override]
        head = super().to_asgi_response(*args, **kwargs)
        return _EventStream(head, self._live, self._stream)


class LiveController(Controller):
    path = "/api/dashboard"
    tags = ["metrics"]
    dependencies = {"principal": Provide(provide_caller)}

    @get(
        "/stream",
        summary="Your new metrics as they are recorded (server-sent events)",
        description=(
            "text/event-stream. `metric` events (id: the metric's id, data: the metric as "
            "the list returns it), one per new metric from any writer; a `backfill` event "
            "(data: {count, last_id}) for a load of more than 1,000 at once; a comment "
            "every 15 s. It opens with a `position` event (id: N, data: {after: N}): where it "
            "starts. "
            "Reconnecting with Last-Event-ID (or ?after=) sends every metric after that id "
            "first. An `end` event (data: {reason}) comes before the server closes it: "
            "a logout, the end of the session, the key's revocation or expiry, or the "
            "server shutting down (reconnect with Last-Event-ID: another instance answers)."
        ),
        security=KEY_READ_SECURITY,
        # 429 also when ENGAGE_STREAMS_PER_USER streams are open already.
        responses=problems(400, *SIGNED_IN, *KEY),
        media_type="text/event-stream",
    )
    async def stream(
        self,
        principal: CurrentCaller,
        auth: Injected[AuthService],
        live: Injected[LiveMetrics],
        stopping: Injected[bool],
        metric_type: MetricTypeFilter = None,
        after: After = None,
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        grant = await _grant_of(auth, principal)
        try:
            stream = await live.open(grant, metric_type=metric_type, after=last_event_id or after)
        except ValidationFailed as exc:
            raise BadQuery(
                FieldError(
                    "Last-Event-ID" if e.field == "after" and last_event_id else e.field, e.message
                )
                for e in exc.errors
            ) from None
        if stopping:
            stream.end(STOPPING)  # told to stop before it opened: reconnect elsewhere
        # Let go when it ends, also when its client left before the head went (_EventStream).
        return _LiveEvents(live, stream, headers={"Cache-Control": "no-store"})
