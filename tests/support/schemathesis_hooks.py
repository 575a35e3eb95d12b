"""schemathesis hooks for engage: what an OpenAPI document cannot say.

Load with ``SCHEMATHESIS_HOOKS=support.schemathesis_hooks`` (``tests`` on
``PYTHONPATH``) and name the account in ``ENGAGE_ST_URL``, ``ENGAGE_ST_EMAIL``
and ``ENGAGE_ST_PASSWORD``. Each case gets a bearer session of its own (a case
that logs out must not sign the next one out), and ``before_call`` turns the
few schema-valid requests that only the server's state can refuse into ones it
accepts; schemathesis judges the request again after the hook, so a request
it meant to be invalid stays invalid:

- an ``Idempotency-Key`` is used once (the same key with another body is a 422);
- a ``cursor`` is one the server issued, or none (any other is a 400);
- ``since`` comes before ``until`` (a cross-field rule);
- a ``recorded_at`` lies between 1970 and now (a bound relative to the clock);
- an API key's ``expires_at`` lies between now and the year 9000 (the same; the
  server holds no moment past 9999 in UTC);
- a link's ``token`` (verify, reset, confirm) is one engage mailed, which no
  generator can make: a token of the documented form is taken out of the body,
  so the case is judged as the invalid request it is (any other is a 400);
- a new address is asked for with the account's password (any other is a 403):
  nothing changes until a link no case has is opened; so are turning the second
  factor off and new recovery codes, which the account (without one) is refused
  with a 409.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import schemathesis

from engage_core.errors import ValidationFailed
from engage_core.queries import check_bound
from engage_core.services.account_mail import LINK_TOKEN_PATTERN

_KEY = re.compile(r"[!-~]{1,255}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{44}")
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# check_bound holds later moments at 9000, among them ones past 9999 in UTC, which no key holds.
_LATEST_EXPIRY = datetime(9000, 1, 1, tzinfo=UTC)
_LINK_TOKEN = re.compile(LINK_TOKEN_PATTERN[1:-1])
# Asked with the account's password: nothing changes, as the account has no second factor.
_WITH_PASSWORD = {"/api/auth/email", "/api/auth/mfa/disable", "/api/auth/mfa/recovery-codes"}


@schemathesis.auth(refresh_interval=None)
class FreshBearerSession:
    """A new session of the test account for every case."""

    def get(self, case: Any, context: Any) -> str:
        response = httpx.post(
            f"{os.environ['ENGAGE_ST_URL']}/api/auth/token",
            json={
                "email": os.environ["ENGAGE_ST_EMAIL"],
                "password": os.environ["ENGAGE_ST_PASSWORD"],
            },
            timeout=30,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and _matches(_KEY, headers[name]):
            headers[name] = uuid.uuid4().hex
    query = case.query
    if isinstance(query, dict):
        if _matches(_CURSOR, query.get("cursor")):
            del query["cursor"]
        since, until = _moment(query.get("since")), _moment(query.get("until"))
        if since is not None and until is not None and since >= until:
            if since == until:
                del query["until"]
            else:
                query["since"], query["until"] = query["until"], query["since"]
    body = case.body
    if isinstance(body, dict) and _matches(_LINK_TOKEN, body.get("token")):
        del body["token"]
    if case.path in _WITH_PASSWORD and isinstance(body, dict) and "password" in body:
        body["password"] = os.environ["ENGAGE_ST_PASSWORD"]
    if isinstance(body, dict):
        items = body.get("items")
        for metric in [body, *(items if isinstance(items, list) else [])]:
            if isinstance(metric, dict):
                _recorded_in_window(metric)
        expiry = _moment(body.get("expires_at"))
        if expiry is not None and not datetime.now(UTC) < expiry < _LATEST_EXPIRY:
            body["expires_at"] = (datetime.now(UTC) + timedelta(days=30)).isoformat()


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _moment(value: object) -> datetime | None:
    """The moment a since, until or recorded_at names, as the server reads it."""
    try:
        return check_bound(value) if isinstance(value, str) else None
    except ValidationFailed:
        return None


def _recorded_in_window(metric: dict[str, Any]) -> None:
    moment = _moment(metric.get("recorded_at"))
    if moment is not None and not _EARLIEST <= moment <= datetime.now(UTC):
        metric["recorded_at"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
