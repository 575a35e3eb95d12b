"""The live stream's frames: byte for byte what Litestar's ServerSentEventMessage
writes for the same event (the stream sends them itself, without Litestar's
streaming response), each metric encoded once for all the streams it reaches."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from litestar.response import ServerSentEventMessage

from engage_core.model import EngagementMetric, MetricType, MetricValue
from engage_core.services.live import StreamEvent
from engage_http.controllers.live import RECONNECT_AFTER_MS, _frame
from engage_http.dto import MetricOut, encode


def metric(metric_id: int, value: str = "12.5") -> EngagementMetric:
    return EngagementMetric(
        id=metric_id,
        user_id=uuid4(),
        metric_type=MetricType("page_view"),
        metric_value=MetricValue(Decimal(value)),
        recorded_at=datetime(2026, 11, 30, 8, 15, 1, 250000, tzinfo=UTC),
    )


def litestars(event: StreamEvent) -> bytes:
    """The frame the stream sent through Litestar's ServerSentEvent before."""
    if event.kind == "metric" and event.metric is not None:
        body = encode(MetricOut.of(event.metric)).decode()
        return ServerSentEventMessage(event="metric", id=event.id, data=body).encode()
    if event.kind == "backfill":
        body = encode({"count": event.count, "last_id": event.id}).decode()
        return ServerSentEventMessage(event="backfill", id=event.id, data=body).encode()
    if event.kind == "position":
        body = encode({"after": event.id}).decode()
        message = ServerSentEventMessage(
            event="position", id=event.id, data=body, retry=RECONNECT_AFTER_MS
        )
        return message.encode()
    if event.kind == "end":
        body = encode({"reason": event.reason}).decode()
        return ServerSentEventMessage(event="end", data=body).encode()
    return ServerSentEventMessage(comment="keep-alive", data=None).encode()


@pytest.mark.parametrize(
    "event",
    [
        StreamEvent("metric", id=41, metric=metric(41)),
        StreamEvent("metric", id=7, metric=metric(7, "-3")),
        StreamEvent("backfill", id=9000, count=1500),
        StreamEvent("position", id=0),
        StreamEvent("position", id=123456789012),
        StreamEvent("end", reason="access ended"),
        StreamEvent("heartbeat"),
    ],
    ids=lambda e: e.kind,
)
def test_a_frame_is_what_litestar_would_write(event: StreamEvent) -> None:
    assert _frame(event) == litestars(event)


def test_each_metric_event_is_encoded_once_and_never_confused_with_another() -> None:
    first = StreamEvent("metric", id=1, metric=metric(1, "1"))
    second = StreamEvent("metric", id=2, metric=metric(2, "2"))

    sent = [_frame(first), _frame(second), _frame(first), _frame(second)]

    assert sent[0] is sent[2]  # the same bytes, not encoded again
    assert sent[1] is sent[3]
    assert sent[0] == litestars(first)
    assert sent[1] == litestars(second)
    # Many events later (the cache emptied meanwhile) it is still the right frame.
    for n in range(1000):
        _frame(StreamEvent("metric", id=10 + n, metric=metric(10 + n)))
    assert _frame(first) == litestars(first)
