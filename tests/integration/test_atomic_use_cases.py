"""Use cases of several writes, as the composition root wires them, are all or
nothing: a later step that fails (or loses its connection) leaves nothing of
the earlier ones. Over PostgreSQL and over the fakes."""

from __future__ import annotations

from typing import Any

import attrs
import psycopg
import pytest

from engage_adapters.bootstrap import Services
from engage_adapters.postgres.transaction import connection
from engage_core.errors import Unauthorized
from engage_core.services.admin import AccountAdmin
from engage_core.services.auth import AuthService, BrowserLogin, Principal
from support.faults import FailingOn, StepFailed

EMAIL = "alice@example.com"
PASSWORD = "alice-password-1"
NEW_PASSWORD = "a-brand-new-password"


@pytest.fixture
async def logins(services: Services) -> tuple[BrowserLogin, BrowserLogin]:
    """Alice, signed up and logged in twice (two session families)."""
    await services.auth.sign_up(email=EMAIL, password=PASSWORD)
    first = await services.auth.log_in(email=EMAIL, password=PASSWORD)
    return first, await services.auth.log_in(email=EMAIL, password=PASSWORD)


def failing(auth: AuthService, **operations: str) -> AuthService:
    """``auth`` with one operation of each named repository failing."""
    wrapped: dict[str, Any] = {
        repo: FailingOn(getattr(auth, repo), op) for repo, op in operations.items()
    }
    return attrs.evolve(auth, **wrapped)


async def live(auth: AuthService, login: BrowserLogin) -> bool:
    try:
        await auth.authenticate(login.access_token)
    except Unauthorized:
        return False
    return True


async def password_is(auth: AuthService, password: str) -> bool:
    try:
        await auth.log_in(email=EMAIL, password=password)
    except Unauthorized:
        return False
    return True


async def test_a_password_change_is_all_or_nothing(services: Services, logins: Any) -> None:
    current, other = logins
    auth = failing(services.auth, sessions="end_all_for_user")

    with pytest.raises(StepFailed):
        await auth.change_password(
            Principal(current.user.id, current.session_id),
            current_password=PASSWORD,
            new_password=NEW_PASSWORD,
        )

    assert await password_is(services.auth, PASSWORD)
    assert not await password_is(services.auth, NEW_PASSWORD)
    assert await live(services.auth, other)


async def test_an_account_deletion_is_all_or_nothing(services: Services, logins: Any) -> None:
    current, other = logins
    auth = failing(services.auth, users="delete")

    with pytest.raises(StepFailed):
        await auth.delete_account(Principal(current.user.id, current.session_id), password=PASSWORD)

    assert await services.auth.users.get(current.user.id) is not None
    assert await live(services.auth, current)
    assert await live(services.auth, other)


async def test_an_operators_set_password_is_all_or_nothing(services: Services, logins: Any) -> None:
    current, _ = logins
    admin = AccountAdmin(failing(services.auth, sessions="end_all_for_user"))

    with pytest.raises(StepFailed):
        await admin.set_password(EMAIL, NEW_PASSWORD)

    assert await password_is(services.auth, PASSWORD)
    assert await live(services.auth, current)


async def test_an_operators_delete_is_all_or_nothing(services: Services, logins: Any) -> None:
    current, _ = logins
    admin = AccountAdmin(failing(services.auth, users="delete"))

    with pytest.raises(StepFailed):
        await admin.delete_user(EMAIL)

    assert await services.auth.users.get(current.user.id) is not None
    assert await live(services.auth, current)


class LosingTheConnection:
    """Sessions whose ``end_all_for_user`` finds its connection gone, as when the
    server restarts between the two steps of a password change."""

    def __init__(self, inner: Any, pg_url: str) -> None:
        self._inner = inner
        self._pg_url = pg_url

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def end_all_for_user(self, *args: Any, **kwargs: Any) -> Any:
        async with connection(self._inner._pool) as conn:
            backend = conn.info.backend_pid
        async with await psycopg.AsyncConnection.connect(self._pg_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", [backend])
        return await self._inner.end_all_for_user(*args, **kwargs)


@pytest.mark.parametrize("storage", ["postgres"])
async def test_a_password_change_that_loses_its_connection_changes_nothing(
    services: Services, logins: Any, pg_url: str
) -> None:
    current, other = logins
    auth = attrs.evolve(services.auth, sessions=LosingTheConnection(services.auth.sessions, pg_url))

    with pytest.raises(psycopg.OperationalError):
        await auth.change_password(
            Principal(current.user.id, current.session_id),
            current_password=PASSWORD,
            new_password=NEW_PASSWORD,
        )

    assert await password_is(services.auth, PASSWORD)
    assert await live(services.auth, other)
