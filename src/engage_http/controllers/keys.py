"""/api/keys: create, list and revoke API keys (signed in by cookie or access token, not a key)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, post
from litestar.di import Provide
from litestar.params import JSONBody, PathParameter

from engage_core.model import Client
from engage_core.services.api_keys import ApiKeyService
from engage_http.dependencies import Injected
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
from engage_http.principal import CurrentPrincipal, provide_principal
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
        self,
        principal: CurrentPrincipal,
        data: JSONBody[ApiKeyIn],
        api_keys: Injected[ApiKeyService],
        client: Injected[Client],
    ) -> Response[CreatedApiKeyOut]:
        issued = await api_keys.create(
            principal.user_id,
            name=data.name,
            scopes=data.scopes,
            expires_at=data.expires_at,
            client=client,
        )
        return json(CreatedApiKeyOut.of(issued), status=201)

    @get(
        "/",
        summary="Your API keys (not revoked), newest first",
        security=READ_SECURITY,
        responses=problems(*SIGNED_IN),
    )
    async def list_keys(
        self, principal: CurrentPrincipal, api_keys: Injected[ApiKeyService]
    ) -> Response[ApiKeyListOut]:
        keys = await api_keys.list_for(principal.user_id)
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
        principal: CurrentPrincipal,
        api_keys: Injected[ApiKeyService],
        client: Injected[Client],
        key_id: Annotated[str, PathParameter(description="The key's id, as created and listed")],
    ) -> Response[None]:
        await api_keys.revoke(principal.user_id, key_id, client)
        return empty()
