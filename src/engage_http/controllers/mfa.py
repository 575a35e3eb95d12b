"""/api/auth/mfa: set up, confirm and disable the second factor (TOTP), and new
recovery codes. Finishing a login with a code is POST /api/auth/mfa/verify, in
AuthController beside login and token."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.di import Provide
from litestar.params import JSONBody

from engage_core.model import Client
from engage_core.services.mfa import MfaService
from engage_http.dependencies import Injected
from engage_http.dto import (
    CodeIn,
    JsonBodyRequest,
    MfaStatusOut,
    PasswordAndCodeIn,
    RecoveryCodesOut,
    TotpSetupOut,
)
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


class MfaController(Controller):
    path = "/api/auth/mfa"
    tags = ["auth"]
    request_class = JsonBodyRequest
    dependencies = {"principal": Provide(provide_principal)}

    @get(
        "/",
        summary="Whether my second factor is on, and how many recovery codes remain",
        security=READ_SECURITY,
        responses=problems(*SIGNED_IN),
    )
    async def status(
        self, principal: CurrentPrincipal, mfa: Injected[MfaService]
    ) -> Response[MfaStatusOut]:
        enabled, remaining = await mfa.status(principal)
        return json(MfaStatusOut(enabled=enabled, recovery_codes_left=remaining))

    @post(
        "/totp",
        status_code=200,
        summary="Start setting up TOTP: a new secret, not on until confirmed",
        security=CHANGE_SECURITY,
        # 409 while the second factor is on: disable it first.
        responses=problems(*BODYLESS_POST, *SIGNED_IN, *CHANGE, 409),
    )
    async def begin_totp(
        self, principal: CurrentPrincipal, mfa: Injected[MfaService]
    ) -> Response[TotpSetupOut]:
        enrolment = await mfa.begin_totp(principal)
        return json(TotpSetupOut.of(enrolment))

    @post(
        "/totp/confirm",
        status_code=200,
        summary="Turn TOTP on with a code from the app; the recovery codes, shown once",
        security=CHANGE_SECURITY,
        # 403 for a wrong code; 409 when nothing waits for confirmation.
        responses=problems(*JSON_BODY, *SIGNED_IN, *CHANGE, 409),
    )
    async def confirm_totp(
        self,
        principal: CurrentPrincipal,
        data: JSONBody[CodeIn],
        mfa: Injected[MfaService],
        client: Injected[Client],
    ) -> Response[RecoveryCodesOut]:
        codes = await mfa.confirm_totp(principal, data.code, client)
        return json(RecoveryCodesOut(recovery_codes=codes))

    @post(
        "/disable",
        status_code=204,
        summary="Turn the second factor off (password and a code)",
        security=CHANGE_SECURITY,
        # 403 for a wrong password or code, 409 when it is not on, 429 after many failures.
        responses={
            **no_content("The second factor is off"),
            **problems(*JSON_BODY, *SIGNED_IN, *CHANGE, 409, 429),
        },
    )
    async def disable(
        self,
        principal: CurrentPrincipal,
        data: JSONBody[PasswordAndCodeIn],
        mfa: Injected[MfaService],
        client: Injected[Client],
    ) -> Response[None]:
        await mfa.disable(principal, password=data.password, code=data.code, client=client)
        return empty()

    @post(
        "/recovery-codes",
        status_code=200,
        summary="New recovery codes (password and a code); the old ones stop working",
        security=CHANGE_SECURITY,
        responses=problems(*JSON_BODY, *SIGNED_IN, *CHANGE, 409, 429),
    )
    async def regenerate_recovery_codes(
        self,
        principal: CurrentPrincipal,
        data: JSONBody[PasswordAndCodeIn],
        mfa: Injected[MfaService],
        client: Injected[Client],
    ) -> Response[RecoveryCodesOut]:
        codes = await mfa.regenerate_recovery_codes(
            principal, password=data.password, code=data.code, client=client
        )
        return json(RecoveryCodesOut(recovery_codes=codes))
