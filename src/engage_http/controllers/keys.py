"""/api/keys: create, list and revoke API keys (signed in by cookie or access token, not a key)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.params import JSONBody, PathParameter

from engage_http.auth import CurrentPrincipal, client_of, provide_principal, services_of
from engage_http.dto import ApiKeyIn, ApiKeyListOut, ApiKeyOut, CreatedApiKeyOut, JsonBodyRequest
from engage_http.openapi import (
    BODYLESS_POST,
    CHANGE,
    CHANGE_SECURITY,
    JSON_BODY,
    READ_SECURITY,
    SIGNED_IN,
    no_content,
    problems,
)
from engage_http.responses import empty, json


class KeysController(Controller):
    path = "/api/keys"
    tags = ["api keys"]
    request_class = JsonBodyRequest
    dependencies = {"principal": Provide(provide_principal)}

    @post(
        "/",
        status_code=201,
        summary="Create an API key; its text is in this answer only",
        security=CHANGE_SECURITY,
        # 409: the user holds 100 keys already.
        responses=problems(*JSON_BODY, *SIGNED_IN, *CHANGE, 409),
    )
    async def create_key(
        self, request: Request[Any, Any, Any], principal: CurrentPrincipal, data: JSONBody[ApiKeyIn]
    ) -> Response[CreatedApiKeyOut]:
        issued = await services_of(request).api_keys.create(
            principal.user_id,
            name=data.name,
            scopes=data.scopes,
            expires_at=data.expires_at,
            client=client_of(request),
        )
        return json(CreatedApiKeyOut.of(issued), status=201)

    @get(
        "/",
        summary="Your API keys (not revoked), newest first",
        security=READ_SECURITY,
        responses=problems(*SIGNED_IN),
    )
    async def list_keys(
        self, request: Request[Any, Any, Any], principal: CurrentPrincipal
    ) -> Response[ApiKeyListOut]:
        keys = await services_of(request).api_keys.list_for(principal.user_id)
        return json(ApiKeyListOut(items=[ApiKeyOut.of(key) for key in keys]))

    @delete(
        "/{key_id:str}",
        status_code=204,
        summary="Revoke an API key: refused at once from then on",
        security=CHANGE_SECURITY,
        responses={
            **no_content("The key is revoked; the streams it opened are closed"),
            **problems(400, *BODYLESS_POST, *SIGNED_IN, *CHANGE, 404),
        },
    )
    async def revoke_key(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentPrincipal,
        key_id: Annotated[str, PathParameter(description="The key's id, as created and listed")],
    ) -> Response[None]:
        await services_of(request).api_keys.revoke(principal.user_id, key_id, client_of(request))
        return empty()
