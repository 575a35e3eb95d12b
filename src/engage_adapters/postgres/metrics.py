"""Engagement metrics in PostgreSQL: keyset pages and summaries from rollups.

Every operation is one statement (a batch is one INSERT, whose rollup trigger
runs inside it), so outside a unit of work each runs in autocommit: atomic all
the same, and without the BEGIN and COMMIT round trips. Inserts first take the
user's write lock (``engage_lock_metric_writes``), so a user's ids appear in
the order they commit, as the live stream needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.owners import UNKNOWN_USER
from engage_adapters.postgres.transaction import rowcount, rows
from engage_core.errors import UnknownUser, ValidationFailed
from engage_core.model import EngagementMetric, MetricDraft, MetricType, MetricValue
from engage_core.queries import Bucket, MetricPageQuery, Point, Series, SummaryQuery
from engage_core.summaries import start_of_local_date

SLOT = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The bucket each 15-minute slot falls in, in the query's zone (%(tz)s). Hours
# are keyed by their starting instant; days and weeks by their local date,
# whose first instant engage_core.summaries computes, as for every repository.
_BUCKET_KEY = {
    Bucket.HOUR: sql.SQL("engage_hour_start(slot, %(tz)s)"),
    Bucket.DAY: sql.SQL("(slot AT TIME ZONE %(tz)s)::date"),
    Bucket.WEEK: sql.SQL("date_trunc('week', slot AT TIME ZONE %(tz)s)::date"),
}

_SUMMARY = """
WITH slots AS (
    SELECT metric_type, bucket_start AS slot, count, sum, min, max
      FROM metric_rollups
     WHERE user_id = %(user)s {rollup_filter}
       AND bucket_start >= %(whole_from)s AND bucket_start < %(whole_to)s
    UNION ALL
    SELECT metric_type, engage_rollup_slot(recorded_at), 1, metric_value, metric_value, metric_value
      FROM engagement_metrics
     WHERE user_id = %(user)s {raw_filter}
       AND recorded_at >= %(since)s AND recorded_at < %(until)s
       AND NOT (recorded_at >= %(whole_from)s AND recorded_at < %(whole_to)s)
)
SELECT metric_type, {bucket} AS bucket, sum(count)::bigint, sum(sum), min(min), max(max)
  FROM slots
 GROUP BY 1, 2
 ORDER BY 1, 2
"""


def _floor_slot(moment: datetime) -> datetime:
    return _EPOCH + ((moment - _EPOCH) // SLOT) * SLOT


def _ceil_slot(moment: datetime) -> datetime:
    floor = _floor_slot(moment)
    return floor if floor == moment else floor + SLOT


_Checked = TypeVar("_Checked", MetricType, MetricValue)


def _stored(kind: type[_Checked], value: object) -> _Checked:
    """A value object around what this table holds, which its rules checked on the
    way in: not checked again on every read (bench/README.md: reads)."""
    made = object.__new__(kind)
    object.__setattr__(made, "value", value)  # how attrs sets a frozen class's field
    return made


class _Row(msgspec.Struct, gc=False):
    t: str
    v: Decimal
    r: datetime


# Decimals as JSON numbers with their digits as written (str(Decimal)), which
# PostgreSQL's numeric reads back exactly; moments as RFC 3339 in UTC.
_rows_encoder = msgspec.json.Encoder(decimal_format="number")


def _rows_json(drafts: Sequence[MetricDraft]) -> str:
    """The drafts as a JSON array of ``{"t", "v", "r"}`` objects, for ``json_to_recordset``."""
    rows_ = [_Row(d.metric_type.value, d.metric_value.value, d.recorded_at.value) for d in drafts]
    return _rows_encoder.encode(rows_).decode()


def stored_metric(user_id: UUID, row: Sequence[Any]) -> EngagementMetric:
    """The metric in a row of ``id, metric_type, metric_value, recorded_at``."""
    return EngagementMetric(
        id=row[0],
        user_id=user_id,
        metric_type=_stored(MetricType, row[1]),
        metric_value=_stored(MetricValue, row[2]),
        recorded_at=row[3],
    )


class PostgresMetricRepository:
    # An insert's foreign-key violation is the port's ``UnknownUser`` (the only key
    # these inserts can break: engagement_metrics' user_id): a user never stored, or
    # deleted while the request ran (its session check passed first).
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def add(self, user_id: UUID, draft: MetricDraft) -> EngagementMetric:
        # ``rows``: with an authenticated request's session check, one round trip.
        try:
            (row,) = await rows(
                self._pool,
                "INSERT INTO engagement_metrics (user_id, metric_type, metric_value, recorded_at)"
                " SELECT owner, %s, %s, %s FROM engage_lock_metric_writes(%s) AS owner"
                " RETURNING id",
                [
                    draft.metric_type.value,
                    draft.metric_value.value,
                    draft.recorded_at.value,
                    user_id,
                ],
            )
        except psycopg.errors.ForeignKeyViolation:
            raise UnknownUser(UNKNOWN_USER) from None
        return EngagementMetric(
            id=row[0],
            user_id=user_id,
            metric_type=draft.metric_type,
            metric_value=draft.metric_value,
            recorded_at=draft.recorded_at.value,
        )

    async def add_many(self, user_id: UUID, drafts: Sequence[MetricDraft]) -> int:
        if not drafts:
            return 0
        # One statement, one rollup upsert: all rows or none; ``rowcount``: with an
        # authenticated request's session check, one round trip. The rows travel as
        # one JSON text, in their order: psycopg adapts three arrays of 100 values in
        # about 15 times the CPU (bench/README.md, "Why the code is the way it is").
        try:
            return await rowcount(
                self._pool,
                "INSERT INTO engagement_metrics (user_id, metric_type, metric_value, recorded_at)"
                " SELECT owner, m.t, m.v, m.r FROM engage_lock_metric_writes(%s) AS owner,"
                " json_to_recordset(%s::json) AS m(t varchar, v numeric, r timestamptz)",
                [user_id, _rows_json(drafts)],
            )
        except psycopg.errors.ForeignKeyViolation:
            raise UnknownUser(UNKNOWN_USER) from None

    async def page(self, user_id: UUID, query: MetricPageQuery) -> Sequence[EngagementMetric]:
        conditions = [sql.SQL("user_id = %(user)s")]
        params: dict[str, Any] = {"user": user_id, "limit": query.limit}
        if query.metric_type is not None:
            conditions.append(sql.SQL("metric_type = %(type)s"))
            params["type"] = query.metric_type.value
        if query.since is not None:
            conditions.append(sql.SQL("recorded_at >= %(since)s"))
            params["since"] = query.since
        if query.until is not None:
            conditions.append(sql.SQL("recorded_at < %(until)s"))
            params["until"] = query.until
        if query.after is not None:
            conditions.append(sql.SQL("(recorded_at, id) < (%(after_at)s, %(after_id)s)"))
            params["after_at"] = query.after.recorded_at
            params["after_id"] = query.after.id
        statement = sql.SQL(
            "SELECT id, metric_type, metric_value, recorded_at FROM engagement_metrics"
            " WHERE {conditions} ORDER BY recorded_at DESC, id DESC LIMIT %(limit)s"
        ).format(conditions=sql.SQL(" AND ").join(conditions))
        # ``rows``: with an authenticated request's session check, one round trip.
        found = await rows(self._pool, statement, params)
        return [stored_metric(user_id, row) for row in found]

    async def summarize(self, user_id: UUID, query: SummaryQuery) -> Sequence[Series]:
        since = query.since or datetime.min.replace(tzinfo=UTC)
        until = query.until or datetime.max.replace(tzinfo=UTC)
        # Whole slots come from the rollups; the ragged edges from raw rows.
        whole_from = _ceil_slot(since) if query.since else since
        whole_to = _floor_slot(until) if query.until else until
        type_filter = sql.SQL("AND metric_type = %(type)s" if query.metric_type else "")
        statement = sql.SQL(_SUMMARY).format(
            rollup_filter=type_filter, raw_filter=type_filter, bucket=_BUCKET_KEY[query.bucket]
        )
        params = {
            "user": user_id,
            "type": query.metric_type.value if query.metric_type else None,
            "tz": query.tz.key,
            "since": since,
            "until": until,
            "whole_from": whole_from,
            "whole_to": max(whole_to, whole_from),
        }
        try:
            found = await rows(self._pool, statement, params)
        except psycopg.errors.InvalidParameterValue:
            raise ValidationFailed.single("tz", "is not a time zone the database knows") from None
        series: dict[str, list[Point]] = {}
        for metric_type, key, count, total, low, high in found:
            start = (
                start_of_local_date(key, query.tz)
                if isinstance(key, date) and not isinstance(key, datetime)
                else key
            )
            series.setdefault(metric_type, []).append(
                Point(start=start.astimezone(query.tz), count=count, sum=total, min=low, max=high)
            )
        # Sorted here, not by the database's collation: the same order as the reference.
        return [
            Series(metric_type=MetricType(t), points=tuple(sorted(p, key=lambda x: x.start)))
            for t, p in sorted(series.items())
        ]
