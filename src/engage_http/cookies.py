"""Every cookie the API sets, built here: the session's access and refresh cookies
and the CSRF token's, each cookie's attributes written once.

- ``engage_access``: the access token, for every path; HttpOnly, SameSite=Lax.
- ``engage_refresh``: the refresh token, sent to /api/auth only; HttpOnly, SameSite=Strict.
- ``csrftoken``: readable by the page (it echoes it in X-CSRFToken); SameSite=Lax.

All three are Secure when the policy says so (HTTPS).
"""

from __future__ import annotations

import math
from datetime import datetime

from litestar.datastructures import Cookie

from engage_adapters.bootstrap import HttpPolicy
from engage_core.services.auth import BrowserLogin

ACCESS_COOKIE = "engage_access"
REFRESH_COOKIE = "engage_refresh"
REFRESH_PATH = "/api/auth"
CSRF_COOKIE = "csrftoken"


def access_cookie(token: str, *, max_age: int, secure: bool) -> Cookie:
    return Cookie(
        key=ACCESS_COOKIE,
        value=token,
        path="/",
        httponly=True,
        secure=secure,
        samesite="lax",
        max_age=max_age,
    )


def refresh_cookie(token: str, *, max_age: int, secure: bool) -> Cookie:
    return Cookie(
        key=REFRESH_COOKIE,
        value=token,
        path=REFRESH_PATH,
        httponly=True,
        secure=secure,
        samesite="strict",
        max_age=max_age,
    )


def csrf_cookie(token: str, *, secure: bool) -> Cookie:
    """The CSRF token's cookie (a session cookie: no Max-Age)."""
    return Cookie(
        key=CSRF_COOKIE,
        value=token,
        path="/",
        httponly=False,  # the frontend reads it and echoes it in X-CSRFToken
        secure=secure,
        samesite="lax",
    )


def session_cookies(
    login: BrowserLogin, policy: HttpPolicy, now: datetime, csrf: Cookie | None
) -> list[Cookie]:
    """The access and refresh cookies for a browser session, then ``csrf`` (a new
    CSRF cookie, when the request brought none)."""
    cookies = [
        access_cookie(
            login.access_token,
            max_age=_seconds_until(login.access_expires_at, now),
            secure=policy.cookie_secure,
        ),
        refresh_cookie(
            login.refresh_token,
            max_age=_seconds_until(login.refresh_expires_at, now),
            secure=policy.cookie_secure,
        ),
    ]
    if csrf is not None:
        cookies.append(csrf)
    return cookies


def cleared_cookies(policy: HttpPolicy) -> list[Cookie]:
    """Cookies that make the browser forget the session."""
    return [
        access_cookie("", max_age=0, secure=policy.cookie_secure),
        refresh_cookie("", max_age=0, secure=policy.cookie_secure),
    ]


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(0, math.ceil((moment - now).total_seconds()))
