"""/api/dashboard: record metrics (one or a batch, idempotently), list them, summarise them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.openapi.spec import OpenAPIType
from litestar.params import HeaderParameter, JSONBody, QueryParameter

from engage_core.errors import ValidationFailed
from engage_core.ports import StoredResponse
from engage_core.queries import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, Bucket, known_time_zones
from engage_core.services.idempotency import IdempotencyGuard, fingerprint
from engage_core.services.metrics import MetricsService
from engage_http.dependencies import Injected
from engage_http.dto import (
    BatchOut,
    JsonBodyRequest,
    MetricBatchIn,
    MetricIn,
    MetricOut,
    MetricPageOut,
    SummaryOut,
    encode,
)
from engage_http.openapi import (
    CHANGE,
    IDEMPOTENCY_KEY_SCHEMA,
    JSON_BODY,
    KEY,
    KEY_CHANGE_SECURITY,
    KEY_READ_SECURITY,
    METRIC_TYPE_SCHEMA,
    MOMENT_SCHEMA,
    SIGNED_IN,
    problems,
    query_text,
)
from engage_http.principal import Caller, CurrentMetricsCaller, provide_metrics_caller
from engage_http.problems import BadQuery
from engage_http.responses import json

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="Repeat within 24 h: the first response comes back and nothing new is stored",
        schema_extra=query_text(**IDEMPOTENCY_KEY_SCHEMA),
    ),
]
# Query parameters arrive as text and the core checks them all at once, so one
# bad value or several give one 400 invalid-query listing each; the schema says
# what each must be.
Moment = Annotated[
    str | None,
    QueryParameter(
        description="ISO 8601 date-time with an offset; since is inclusive, until exclusive "
        "and after since",
        required=False,
        schema_extra=query_text(**MOMENT_SCHEMA),
    ),
]
MetricTypeFilter = Annotated[
    str | None,
    QueryParameter(
        description="Only this metric type", schema_extra=query_text(**METRIC_TYPE_SCHEMA)
    ),
]
PageSize = Annotated[
    str | None,
    QueryParameter(
        description="Metrics per page",
        schema_extra={
            "one_of": None,
            "type": OpenAPIType.INTEGER,
            "minimum": 1,
            "maximum": MAX_PAGE_LIMIT,
            "default": DEFAULT_PAGE_LIMIT,
        },
    ),
]
Cursor = Annotated[
    str | None,
    QueryParameter(
        description="The next_cursor of the previous page, for the same filters; "
        "any other value is a 400",
        # CursorCodec's text: 33 bytes in unpadded URL-safe base64.
        schema_extra=query_text(pattern="^[A-Za-z0-9_-]{44}$"),
    ),
]
BucketName = Annotated[
    str,
    QueryParameter(
        description="The width of each point", schema_extra={"enum": [b.value for b in Bucket]}
    ),
]
TimeZone = Annotated[
    str,
    QueryParameter(
        description="The IANA time zone whose hours, days and weeks the buckets follow",
        schema_extra={"enum": sorted(known_time_zones())},
    ),
]
_RECORD_PROBLEMS = (*JSON_BODY, *SIGNED_IN, *CHANGE, *KEY, 409)
_READ_PROBLEMS = (400, *SIGNED_IN, *KEY)


async def _once(
    request: Request[Any, Any, Any],
    idempotency: IdempotencyGuard,
    principal: Caller,
    key: str | None,
    action: Callable[[Caller], Awaitable[StoredResponse]],
) -> Response[Any]:
    """Run ``action``, or replay its first response when the Idempotency-Key repeats.

    The fingerprint is of the body as sent, not as parsed: it is taken before the
    values are validated, so it must hold for any body, however hostile.
    """
    if key is None:
        stored = await action(principal)
    else:
        stored = await idempotency.run(
            user_id=principal.user_id,
            key=key,
            request_fingerprint=fingerprint(request.method, request.url.path, await request.body()),
            action=lambda: action(principal),
        )
    return json(stored.body, status=stored.status)


def _as_bad_query(exc: ValidationFailed) -> BadQuery:
    return BadQuery(exc.errors)


class MetricsController(Controller):
    path = "/api/dashboard"
    tags = ["metrics"]
    request_class = JsonBodyRequest
    # A signed-in user, or an API key with metrics:read (GET) or metrics:write (POST).
    # Every handler answers through ``principal.run``: a user's session is checked
    # there, in the same round trip as the handler's first statement.
    dependencies = {"principal": Provide(provide_metrics_caller)}

    @get(
        "/metrics",
        summary="Your metrics, newest first, a page at a time",
        security=KEY_READ_SECURITY,
        responses=problems(*_READ_PROBLEMS),
    )
    async def list_metrics(
        self,
        principal: CurrentMetricsCaller,
        metrics: Injected[MetricsService],
        metric_type: MetricTypeFilter = None,
        since: Moment = None,
        until: Moment = None,
        limit: PageSize = None,
        cursor: Cursor = None,
    ) -> Response[MetricPageOut]:
        try:
            page = await principal.run(
                lambda caller: metrics.list(
                    caller.user_id,
                    metric_type=metric_type,
                    since=since,
                    until=until,
                    limit=limit,
                    cursor=cursor,
                )
            )
        except ValidationFailed as exc:
            raise _as_bad_query(exc) from None
        return json(MetricPageOut.of(page))

    @post(
        "/metrics",
        status_code=201,
        summary="Record one metric",
        security=KEY_CHANGE_SECURITY,
        responses=problems(*_RECORD_PROBLEMS),
    )
    async def record_metric(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentMetricsCaller,
        data: JSONBody[MetricIn],
        metrics: Injected[MetricsService],
        idempotency: Injected[IdempotencyGuard],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MetricOut]:
        async def record(caller: Caller) -> StoredResponse:
            metric = await metrics.record(caller.user_id, **data.as_mapping())
            return StoredResponse(201, encode(MetricOut.of(metric)))

        return await principal.run(
            lambda caller: _once(request, idempotency, caller, idempotency_key, record)
        )

    @post(
        "/metrics/batch",
        status_code=201,
        summary="Record up to 1000 metrics, all or none",
        security=KEY_CHANGE_SECURITY,
        responses=problems(*_RECORD_PROBLEMS),
    )
    async def record_batch(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentMetricsCaller,
        data: JSONBody[MetricBatchIn],
        metrics: Injected[MetricsService],
        idempotency: Injected[IdempotencyGuard],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[BatchOut]:
        async def record(caller: Caller) -> StoredResponse:
            inserted = await metrics.record_batch(
                caller.user_id, [item.as_mapping() for item in data.items]
            )
            return StoredResponse(201, encode(BatchOut(inserted=inserted)))

        return await principal.run(
            lambda caller: _once(request, idempotency, caller, idempotency_key, record)
        )

    @get(
        "/summary",
        summary="Count, sum, avg, min and max per bucket and type",
        security=KEY_READ_SECURITY,
        responses=problems(*_READ_PROBLEMS),
    )
    async def summary(
        self,
        principal: CurrentMetricsCaller,
        metrics: Injected[MetricsService],
        bucket: BucketName = Bucket.DAY.value,
        tz: TimeZone = "UTC",
        since: Moment = None,
        until: Moment = None,
        metric_type: MetricTypeFilter = None,
    ) -> Response[SummaryOut]:
        try:
            summary = await principal.run(
                lambda caller: metrics.summary(
                    caller.user_id,
                    bucket=bucket,
                    tz=tz,
                    since=since,
                    until=until,
                    metric_type=metric_type,
                )
            )
        except ValidationFailed as exc:
            raise _as_bad_query(exc) from None
        return json(SummaryOut.of(summary))
