"""/api/auth: sign up, log in (cookies or a bearer token, with the second factor
when on), refresh, log out, me, password."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.params import JSONBody, QueryParameter

from engage_adapters.bootstrap import HttpPolicy
from engage_core.errors import FieldError, Unauthorized
from engage_core.model import Client
from engage_core.ports import Clock
from engage_core.services.auth import AccessGrant, AuthService, BrowserLogin, LogoutScope
from engage_core.services.mfa import MfaRequired, MfaService
from engage_http.cookies import REFRESH_COOKIE, cleared_cookies, session_cookies
from engage_http.csrf import csrf_cookie_if_missing
from engage_http.dependencies import Injected
from engage_http.dto import (
    Credentials,
    JsonBodyRequest,
    LoginOut,
    MeOut,
    MfaRequiredOut,
    MfaVerifyIn,
    PasswordChange,
    PasswordConfirmation,
    TokenOut,
    UserOut,
)
from engage_http.guards import limit_auth_attempts, refuse_foreign_origin
from engage_http.openapi import (
    BODYLESS_POST,
    CHANGE,
    CHANGE_SECURITY,
    JSON_BODY,
    READ_SECURITY,
    REFRESH_SECURITY,
    SIGNED_IN,
    no_content,
    problems,
)
from engage_http.openapi_headers import CLEARS_SESSION_COOKIES, SETS_SESSION_COOKIES
from engage_http.principal import CurrentPrincipal, provide_logout_principal, provide_principal
from engage_http.problems import BadQuery
from engage_http.prometheus import login_attempt
from engage_http.responses import empty, json

_ENTRY_GUARDS = [refuse_foreign_origin, limit_auth_attempts]
# Credentials in the body, not a cookie, authenticate these: the Origin guard
# protects them, and a browser holding an old refresh cookie can still sign in.
_NOT_BY_COOKIE = {"exclude_from_csrf": True}
# What signup, login and token can answer besides success: a foreign Origin is 403.
_ENTRY_PROBLEMS = (*JSON_BODY, 403, 429, 503)
# A challenge or a bearer token is a credential in the body: no cache may keep it (RFC 6749 §5.1).
_NOT_STORED = {"Cache-Control": "no-store"}


def _browser_session(
    request: Request[Any, Any, Any], login: BrowserLogin, policy: HttpPolicy, clock: Clock
) -> Response[Any]:
    cookies = session_cookies(login, policy, clock.now(), csrf_cookie_if_missing(request, policy))
    body = LoginOut(user=UserOut.of(login.user), expires_at=login.access_expires_at)
    return json(body, cookies=cookies)


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]
    request_class = JsonBodyRequest
    dependencies = {"principal": Provide(provide_principal)}

    @post(
        "/signup",
        guards=_ENTRY_GUARDS,
        opt=_NOT_BY_COOKIE,
        status_code=201,
        summary="Create an account",
        responses=problems(*_ENTRY_PROBLEMS, 409),
    )
    async def sign_up(
        self, data: JSONBody[Credentials], auth: Injected[AuthService], client: Injected[Client]
    ) -> Response[UserOut]:
        user = await auth.sign_up(email=data.email, password=data.password, client=client)
        return json(UserOut.of(user), status=201)

    @post(
        "/login",
        guards=_ENTRY_GUARDS,
        opt=_NOT_BY_COOKIE,
        status_code=200,
        summary="Log in a browser (cookies)",
        response_headers=SETS_SESSION_COOKIES,
        responses=problems(*_ENTRY_PROBLEMS, 401),
    )
    async def log_in(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[Credentials],
        auth: Injected[AuthService],
        client: Injected[Client],
        policy: Injected[HttpPolicy],
        clock: Injected[Clock],
    ) -> Response[LoginOut | MfaRequiredOut]:
        with login_attempt("browser"):
            login = await auth.log_in(email=data.email, password=data.password, client=client)
        return _signed_in(request, login, policy, clock)

    @post(
        "/token",
        guards=_ENTRY_GUARDS,
        opt=_NOT_BY_COOKIE,
        status_code=200,
        summary="Get a bearer token",
        responses=problems(*_ENTRY_PROBLEMS, 401),
    )
    async def issue_token(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[Credentials],
        auth: Injected[AuthService],
        client: Injected[Client],
        policy: Injected[HttpPolicy],
        clock: Injected[Clock],
    ) -> Response[TokenOut | MfaRequiredOut]:
        with login_attempt("token"):
            grant = await auth.issue_token(email=data.email, password=data.password, client=client)
        return _signed_in(request, grant, policy, clock)

    @post(
        "/mfa/verify",
        guards=_ENTRY_GUARDS,
        opt=_NOT_BY_COOKIE,
        status_code=200,
        summary="Finish a login with the second factor's code",
        response_headers=SETS_SESSION_COOKIES,
        description="The answer of the login (cookies) or token request that gave the challenge.",
        responses=problems(*_ENTRY_PROBLEMS, 401),
    )
    async def verify_mfa(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[MfaVerifyIn],
        mfa: Injected[MfaService],
        client: Injected[Client],
        policy: Injected[HttpPolicy],
        clock: Injected[Clock],
    ) -> Response[LoginOut | TokenOut]:
        with login_attempt("mfa"):
            done = await mfa.verify_login(challenge=data.challenge, code=data.code, client=client)
        return _signed_in(request, done, policy, clock)

    @post(
        "/refresh",
        guards=[limit_auth_attempts],
        status_code=200,
        summary="Rotate the session",
        response_headers=SETS_SESSION_COOKIES,
        security=REFRESH_SECURITY,
        responses=problems(*BODYLESS_POST, *SIGNED_IN, *CHANGE, 429),
    )
    async def refresh(
        self,
        request: Request[Any, Any, Any],
        auth: Injected[AuthService],
        client: Injected[Client],
        policy: Injected[HttpPolicy],
        clock: Injected[Clock],
    ) -> Response[LoginOut]:
        token = request.cookies.get(REFRESH_COOKIE)
        if not token:
            raise Unauthorized("no refresh cookie", reason="no refresh cookie")
        with login_attempt("refresh"):
            login = await auth.refresh(token, client)
        return _browser_session(request, login, policy, clock)

    @post(
        "/logout",
        # Also by the refresh cookie alone: a browser's access cookie lives 15 minutes.
        dependencies={"principal": Provide(provide_logout_principal)},
        status_code=204,
        summary="End this session, or all of them",
        response_headers=CLEARS_SESSION_COOKIES,
        security=CHANGE_SECURITY,
        responses={
            **no_content("The session (or every session) has ended"),
            **problems(400, *BODYLESS_POST, *SIGNED_IN, *CHANGE),
        },
    )
    async def log_out(
        self,
        principal: CurrentPrincipal,
        auth: Injected[AuthService],
        client: Injected[Client],
        policy: Injected[HttpPolicy],
        # Named ``which`` here: Litestar reserves ``scope`` for the ASGI scope.
        which: Annotated[
            str,
            QueryParameter(
                name="scope",
                description="current: this session; all: every session of the user",
                schema_extra={"enum": [s.value for s in LogoutScope]},
            ),
        ] = LogoutScope.CURRENT.value,
    ) -> Response[None]:
        await auth.log_out(principal, _logout_scope(which), client)
        return empty(cookies=cleared_cookies(policy))

    @get("/me", summary="Who am I", security=READ_SECURITY, responses=problems(*SIGNED_IN))
    async def me(
        self, principal: CurrentPrincipal, auth: Injected[AuthService], mfa: Injected[MfaService]
    ) -> Response[MeOut]:
        me = MeOut.of(await auth.me(principal))
        me.mfa_enabled, _ = await mfa.status(principal)
        return json(me)

    @post(
        "/password",
        status_code=204,
        summary="Change the password; other sessions end",
        security=CHANGE_SECURITY,
        # 403 also for a wrong current password; 429 after too many of them.
        responses={
            **no_content("The password is changed; every other session has ended"),
            **problems(*JSON_BODY, *SIGNED_IN, *CHANGE, 429),
        },
    )
    async def change_password(
        self,
        principal: CurrentPrincipal,
        data: JSONBody[PasswordChange],
        auth: Injected[AuthService],
        client: Injected[Client],
    ) -> None:
        await auth.change_password(
            principal,
            current_password=data.current_password,
            new_password=data.new_password,
            client=client,
        )

    @delete(
        "/me",
        status_code=204,
        summary="Delete the account and all its data",
        response_headers=CLEARS_SESSION_COOKIES,
        security=CHANGE_SECURITY,
        responses={
            **no_content("The account and all its data are gone"),
            **problems(*JSON_BODY, *SIGNED_IN, *CHANGE, 429),
        },
    )
    async def delete_account(
        self,
        principal: CurrentPrincipal,
        data: JSONBody[PasswordConfirmation],
        auth: Injected[AuthService],
        policy: Injected[HttpPolicy],
    ) -> Response[None]:
        await auth.delete_account(principal, password=data.password)
        return empty(cookies=cleared_cookies(policy))


def _signed_in(
    request: Request[Any, Any, Any],
    outcome: BrowserLogin | AccessGrant | MfaRequired,
    policy: HttpPolicy,
    clock: Clock,
) -> Response[Any]:
    """A session's cookies, a bearer token, or (the second factor on) the challenge."""
    if isinstance(outcome, MfaRequired):
        return json(MfaRequiredOut.of(outcome), headers=_NOT_STORED)
    if isinstance(outcome, AccessGrant):
        token = TokenOut(access_token=outcome.access_token, expires_in=outcome.expires_in)
        return json(token, headers=_NOT_STORED)
    return _browser_session(request, outcome, policy, clock)


def _logout_scope(raw: str) -> LogoutScope:
    try:
        return LogoutScope(raw)
    except ValueError:
        raise BadQuery([FieldError("scope", "must be current or all")]) from None
