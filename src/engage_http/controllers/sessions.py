"""/api/auth/sessions: the caller's signed-in devices, and ending one of them."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get
from litestar.di import Provide
from litestar.params import PathParameter

from engage_core.errors import FieldError
from engage_core.model import Client
from engage_core.services.auth import AuthService
from engage_http.dependencies import Injected
from engage_http.dto import JsonBodyRequest, SessionListOut, SessionOut
from engage_http.openapi import (
    BODYLESS_POST,
    CHANGE,
    CHANGE_SECURITY,
    READ_SECURITY,
    SIGNED_IN,
    no_content,
    problems,
)
from engage_http.principal import CurrentPrincipal, provide_principal
from engage_http.problems import BadPath
from engage_http.responses import empty, json


class SessionsController(Controller):
    path = "/api/auth/sessions"
    tags = ["auth"]
    request_class = JsonBodyRequest
    dependencies = {"principal": Provide(provide_principal)}

    @get(
        "/",
        summary="List my live sessions, one per signed-in device",
        security=READ_SECURITY,
        responses=problems(*SIGNED_IN),
    )
    async def list_sessions(
        self, principal: CurrentPrincipal, auth: Injected[AuthService]
    ) -> Response[SessionListOut]:
        devices = await auth.devices(principal)
        items = [SessionOut.of(device, current=current) for device, current in devices]
        return json(SessionListOut(items=items))

    @delete(
        "/{session_id:str}",
        status_code=204,
        summary="End one of my sessions at once",
        security=CHANGE_SECURITY,
        responses={
            **no_content("The session has ended, in every process"),
            # 400 for an id that is no UUID; 404 for one that is not a live session of mine.
            **problems(400, *BODYLESS_POST, *SIGNED_IN, *CHANGE, 404),
        },
    )
    async def end_session(
        self,
        principal: CurrentPrincipal,
        auth: Injected[AuthService],
        client: Injected[Client],
        session_id: Annotated[
            str, PathParameter(description="The session's id, as listed", format="uuid")
        ],
    ) -> Response[None]:
        try:
            device_id = UUID(session_id)
        except ValueError:
            raise BadPath([FieldError("session_id", "must be a session id (a UUID)")]) from None
        await auth.end_device(principal, device_id, client)
        return empty()
