"""Engagement metrics: record one or a batch, list them, summarise them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from attrs import define

from engage_core.errors import FieldError, ValidationFailed
from engage_core.model import EngagementMetric, MetricDraft, MetricType
from engage_core.ports import Clock, MetricRepository
from engage_core.queries import (
    DEFAULT_PAGE_LIMIT,
    CursorCodec,
    MetricPage,
    MetricPageQuery,
    Position,
    Summary,
    SummaryQuery,
    check_bound,
    check_bucket,
    check_limit,
    check_range,
    check_time_zone,
)

__all__ = [
    "MAX_BATCH",
    "MetricsService",
]

MAX_BATCH = 1000


def _field(name: str, factory: Any, raw: object) -> Any:
    """``factory(raw)``, its validation errors reported against ``name``."""
    try:
        return factory(raw)
    except ValidationFailed as exc:
        raise exc.renamed(name) from None


def _collect(*checks: tuple[str, Any, object]) -> list[Any]:
    """Run every check, raising one ``ValidationFailed`` with all the faults."""
    errors: list[FieldError] = []
    values: list[Any] = []
    for name, factory, raw in checks:
        try:
            values.append(None if raw is None else _field(name, factory, raw))
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    return values


@define
class MetricsService:
    metrics: MetricRepository
    clock: Clock
    cursors: CursorCodec

    async def record(
        self,
        user_id: UUID,
        *,
        metric_type: object,
        metric_value: object,
        recorded_at: object = None,
    ) -> EngagementMetric:
        draft = MetricDraft.parse(
            metric_type=metric_type,
            metric_value=metric_value,
            recorded_at=recorded_at,
            now=self.clock.now(),
        )
        return await self.metrics.add(user_id, draft)

    async def record_batch(self, user_id: UUID, items: Sequence[Mapping[str, object]]) -> int:
        """Store 1 to 1000 metrics, all or none. Faults are reported as ``items.N.field``."""
        if not 1 <= len(items) <= MAX_BATCH:
            raise ValidationFailed.single("items", f"must hold 1 to {MAX_BATCH} metrics")
        now = self.clock.now()
        drafts: list[MetricDraft] = []
        errors: list[FieldError] = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                errors.append(FieldError(f"items.{index}", "must be an object"))
                continue
            try:
                drafts.append(
                    MetricDraft.parse(
                        metric_type=item.get("metric_type"),
                        metric_value=item.get("metric_value"),
                        recorded_at=item.get("recorded_at"),
                        now=now,
                    )
                )
            except ValidationFailed as exc:
                errors.extend(exc.under(f"items.{index}").errors)
        if errors:
            raise ValidationFailed(errors)
        return await self.metrics.add_many(user_id, drafts)

    async def list(
        self,
        user_id: UUID,
        *,
        metric_type: object = None,
        since: object = None,
        until: object = None,
        limit: object = DEFAULT_PAGE_LIMIT,
        cursor: object = None,
    ) -> MetricPage:
        """A page of the user's metrics, newest first, and the cursor of the next page."""
        kind, start, end, size = _collect(
            ("metric_type", MetricType, metric_type),
            ("since", check_bound, since),
            ("until", check_bound, until),
            ("limit", check_limit, limit),
        )
        check_range(start, end)
        scope = _cursor_scope(user_id, kind, start, end)
        after = None
        if cursor is not None:
            if not isinstance(cursor, str):
                raise ValidationFailed.single("cursor", "is not a cursor this server issued")
            after = self.cursors.decode(cursor, scope=scope)
        size = size or DEFAULT_PAGE_LIMIT
        # One more than asked tells whether another page follows.
        query = MetricPageQuery(
            metric_type=kind, since=start, until=end, limit=size + 1, after=after
        )
        rows = await self.metrics.page(user_id, query)
        items = tuple(rows[:size])
        next_cursor = None
        if len(rows) > size:
            last = items[-1]
            next_cursor = self.cursors.encode(Position(last.recorded_at, last.id), scope=scope)
        return MetricPage(items=items, next_cursor=next_cursor)

    async def summary(
        self,
        user_id: UUID,
        *,
        bucket: object = "day",
        tz: object = "UTC",
        since: object = None,
        until: object = None,
        metric_type: object = None,
    ) -> Summary:
        """Count, sum, avg, min and max per bucket and type, in the time zone ``tz``."""
        bucket_, zone, start, end, kind = _collect(
            ("bucket", check_bucket, bucket),
            ("tz", check_time_zone, tz),
            ("since", check_bound, since),
            ("until", check_bound, until),
            ("metric_type", MetricType, metric_type),
        )
        check_range(start, end)
        query = SummaryQuery(
            bucket=bucket_ or "day", tz=zone or "UTC", since=start, until=end, metric_type=kind
        )
        series = await self.metrics.summarize(user_id, query)
        return Summary(bucket=query.bucket, tz=query.tz, series=tuple(series))


def _cursor_scope(
    user_id: UUID, kind: MetricType | None, since: datetime | None, until: datetime | None
) -> str:
    """What a cursor is bound to: its user and filters. An absent filter is the
    empty string, which no metric type and no timestamp can be."""
    parts = (
        str(user_id),
        kind.value if kind else "",
        since.isoformat() if since else "",
        until.isoformat() if until else "",
    )
    return "|".join(parts)
