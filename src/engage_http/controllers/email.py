"""/api/auth: verify the email address, reset a forgotten password, change the address.

Links in mails carry a one-time token (after ``#token=``, so it never reaches
a server log); the web app's pages post it back here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody

from engage_adapters.bootstrap import HttpPolicy
from engage_core.services.email import EmailFlows
from engage_http.client_address import client_address
from engage_http.cookies import cleared_cookies
from engage_http.dependencies import Injected
from engage_http.dto import (
    AcceptedOut,
    EmailChange,
    ForgottenPassword,
    JsonBodyRequest,
    LinkTokenIn,
    PasswordReset,
)
from engage_http.guards import limit_auth_attempts, refuse_foreign_origin
from engage_http.openapi import (
    BODYLESS_POST,
    CHANGE,
    CHANGE_SECURITY,
    JSON_BODY,
    PROBLEM_MEDIA_TYPE,
    SIGNED_IN,
    Problem,
    no_content,
    problems,
)
from engage_http.openapi_headers import CLEARS_SESSION_COOKIES
from engage_http.principal import CurrentPrincipal, provide_principal
from engage_http.responses import empty, json

# The token in the body is the credential: the Origin guard protects these, as it
# does signup and login, and a browser with an old session cookie can still use them.
_BY_TOKEN = {"exclude_from_csrf": True}
_BAD_LINK = {
    400: ResponseSpec(
        data_container=Problem,
        description="Malformed JSON, or a link that is not valid (invalid-token: used "
        "already, expired or never issued; one answer for all three)",
        media_type=PROBLEM_MEDIA_TYPE,
        generate_examples=False,
    )
}
_JSON_BODY_BUT_400 = tuple(s for s in JSON_BODY if s != 400)

# Every answer to forgot-password takes at least this long (seconds): far above what
# either a known or an unknown address costs, so both take the same time.
FORGOT_TAKES_AT_LEAST = 0.2


class EmailController(Controller):
    path = "/api/auth"
    tags = ["email"]
    request_class = JsonBodyRequest
    dependencies = {"principal": Provide(provide_principal)}

    @post(
        "/verify/request",
        status_code=202,
        summary="Send a new verification link to the account's address",
        security=CHANGE_SECURITY,
        responses=problems(*BODYLESS_POST, *SIGNED_IN, *CHANGE, 429),
    )
    async def request_verification(
        self, principal: CurrentPrincipal, email_flows: Injected[EmailFlows]
    ) -> Response[AcceptedOut]:
        await email_flows.request_verification(principal)
        return json(
            AcceptedOut("if the address is not verified yet, a link is on its way"), status=202
        )

    @post(
        "/verify",
        guards=[refuse_foreign_origin],
        opt=_BY_TOKEN,
        status_code=204,
        summary="Verify the address with the link's token",
        responses={
            **no_content("The address is verified"),
            **_BAD_LINK,
            **problems(*_JSON_BODY_BUT_400, 403, 503),
        },
    )
    async def verify(self, data: JSONBody[LinkTokenIn], email_flows: Injected[EmailFlows]) -> None:
        await email_flows.verify_email(data.token)

    @post(
        "/password/forgot",
        guards=[refuse_foreign_origin],
        opt=_BY_TOKEN,
        status_code=202,
        summary="Mail a password reset link (the same answer whatever the email)",
        responses=problems(*JSON_BODY, 403, 429, 503),
    )
    async def forgot_password(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ForgottenPassword],
        email_flows: Injected[EmailFlows],
        policy: Injected[HttpPolicy],
    ) -> Response[AcceptedOut]:
        started = time.monotonic()
        await email_flows.forgot_password(
            email=data.email, client_address=client_address(request, policy.trusted_proxies)
        )
        # What a known address costs more than an unknown one (its link's token) must
        # not show in the time the answer takes.
        await asyncio.sleep(max(0.0, started + FORGOT_TAKES_AT_LEAST - time.monotonic()))
        return json(
            AcceptedOut("if an account has this address, a reset link is on its way"), status=202
        )

    @post(
        "/password/reset",
        guards=[refuse_foreign_origin, limit_auth_attempts],
        opt=_BY_TOKEN,
        status_code=204,
        summary="Set a new password with the link's token; every session ends",
        response_headers=CLEARS_SESSION_COOKIES,
        responses={
            **no_content("The password is changed and every session of the account has ended"),
            **_BAD_LINK,
            **problems(*_JSON_BODY_BUT_400, 403, 429, 503),
        },
    )
    async def reset_password(
        self,
        data: JSONBody[PasswordReset],
        email_flows: Injected[EmailFlows],
        policy: Injected[HttpPolicy],
    ) -> Response[None]:
        await email_flows.reset_password(token=data.token, new_password=data.new_password)
        return empty(cookies=cleared_cookies(policy))

    @post(
        "/email",
        status_code=202,
        summary="Change the address: a confirmation link goes to the new one",
        security=CHANGE_SECURITY,
        # 403 also for a wrong password; 409 when another account has the address.
        responses=problems(*JSON_BODY, *SIGNED_IN, *CHANGE, 409, 429),
    )
    async def change_email(
        self,
        principal: CurrentPrincipal,
        data: JSONBody[EmailChange],
        email_flows: Injected[EmailFlows],
    ) -> Response[AcceptedOut]:
        await email_flows.change_email(principal, new_email=data.new_email, password=data.password)
        return json(AcceptedOut("a confirmation link is on its way to the new address"), status=202)

    @post(
        "/email/confirm",
        guards=[refuse_foreign_origin],
        opt=_BY_TOKEN,
        status_code=204,
        summary="Confirm the new address with the link's token",
        responses={
            **no_content("The account has its new address"),
            **_BAD_LINK,
            **problems(*_JSON_BODY_BUT_400, 403, 409, 503),
        },
    )
    async def confirm_email_change(
        self, data: JSONBody[LinkTokenIn], email_flows: Injected[EmailFlows]
    ) -> None:
        await email_flows.confirm_email_change(data.token)
