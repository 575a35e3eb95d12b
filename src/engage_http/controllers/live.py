"""GET /api/dashboard/stream: the caller's new metrics as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from litestar import Controller, get
from litestar.background_tasks import BackgroundTask
from litestar.di import Provide
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from engage_core.errors import FieldError, Unauthorized, ValidationFailed
from engage_core.model import Grant, GrantId
from engage_core.services.api_keys import KeyPrincipal
from engage_core.services.auth import AuthService
from engage_core.services.live import LiveMetrics, Stream, StreamEvent
from engage_http.dependencies import Injected
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


def _message(event: StreamEvent) -> ServerSentEventMessage:
    if event.kind == "metric" and event.metric is not None:
        body = encode(MetricOut.of(event.metric)).decode()
        return ServerSentEventMessage(event="metric", id=event.id, data=body)
    if event.kind == "backfill":
        body = encode({"count": event.count, "last_id": event.id}).decode()
        return ServerSentEventMessage(event="backfill", id=event.id, data=body)
    if event.kind == "position":
        # Sets the client's Last-Event-ID before any metric, so a reconnect resumes from here.
        body = encode({"after": event.id}).decode()
        return ServerSentEventMessage(
            event="position", id=event.id, data=body, retry=RECONNECT_AFTER_MS
        )
    if event.kind == "end":
        return ServerSentEventMessage(event="end", data=encode({"reason": event.reason}).decode())
    return ServerSentEventMessage(comment="keep-alive", data=None)


async def _messages(live: LiveMetrics, stream: Stream) -> AsyncIterator[ServerSentEventMessage]:
    async for event in live.events(stream):
        yield _message(event)


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
        return ServerSentEvent(
            _messages(live, stream),
            headers={"Cache-Control": "no-store"},
            # Also when the client left before the first event: the stream is let go.
            background=BackgroundTask(live.close, stream),
        )
