"""/api/auth/activity: the caller's own activity log, newest first, a page at a time."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get
from litestar.di import Provide
from litestar.openapi.spec import OpenAPIType
from litestar.params import QueryParameter

from engage_core.errors import ValidationFailed
from engage_core.queries import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT
from engage_core.services.activity import ActivityLog
from engage_http.dependencies import Injected
from engage_http.dto import ActivityPageOut, JsonBodyRequest
from engage_http.openapi import READ_SECURITY, SIGNED_IN, problems, query_text
from engage_http.principal import CurrentPrincipal, provide_principal
from engage_http.problems import BadQuery
from engage_http.responses import json

PageSize = Annotated[
    str | None,
    QueryParameter(
        description="Entries per page",
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
        description="The next_cursor of the previous page; any other value is a 400",
        schema_extra=query_text(pattern="^[A-Za-z0-9_-]{44}$"),
    ),
]


class ActivityController(Controller):
    path = "/api/auth/activity"
    tags = ["auth"]
    request_class = JsonBodyRequest
    dependencies = {"principal": Provide(provide_principal)}

    @get(
        "/",
        summary="My activity: sign-ins, failures, sessions ended, second factor on or off",
        security=READ_SECURITY,
        responses=problems(400, *SIGNED_IN),
    )
    async def list_activity(
        self,
        principal: CurrentPrincipal,
        activity: Injected[ActivityLog],
        limit: PageSize = None,
        cursor: Cursor = None,
    ) -> Response[ActivityPageOut]:
        try:
            page = await activity.page_for(principal.user_id, limit=limit, cursor=cursor)
        except ValidationFailed as exc:
            raise BadQuery(exc.errors) from None
        return json(ActivityPageOut.of(page))
