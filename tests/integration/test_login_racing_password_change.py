"""A login or a refresh that races a password change or reset: the change ends
every session (every other one, for a change), so a session started on the old
password while the change ran must end with the others, or never start."""

from __future__ import annotations

import asyncio

import pytest

from engage_adapters.bootstrap import Services
from engage_core.errors import Unauthorized
from engage_core.model import Password

OLD, NEW = "the old passphrase", "the new passphrase"


async def test_a_login_whose_password_is_reset_while_it_is_checked_starts_no_session(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await services.admin.create_user(email="ada@example.com", password=OLD)
    hasher = services.auth.hasher
    checked = hasher.verify

    async def reset_right_after(password: Password, password_hash: str) -> bool:
        matched = await checked(password, password_hash)
        monkeypatch.setattr(hasher, "verify", checked)  # once
        await services.admin.set_password("ada@example.com", NEW)
        return matched

    monkeypatch.setattr(hasher, "verify", reset_right_after)
    with pytest.raises(Unauthorized):
        await services.auth.log_in(email="ada@example.com", password=OLD)
    _, live = await services.admin.sessions_of("ada@example.com")
    assert live == []
    assert (await services.auth.log_in(email="ada@example.com", password=NEW)) is not None
    assert user.id == (await services.admin.find("ada@example.com")).id


async def test_a_refresh_racing_a_reset_leaves_no_live_session(services: Services) -> None:
    await services.admin.create_user(email="bob@example.com", password=OLD)
    for _ in range(20):
        login = await services.auth.log_in(email="bob@example.com", password=OLD)
        refresh_token = login.refresh_token  # type: ignore[union-attr]
        await asyncio.gather(
            services.auth.refresh(refresh_token),
            services.admin.set_password("bob@example.com", NEW),
            return_exceptions=True,
        )
        _, live = await services.admin.sessions_of("bob@example.com")
        assert live == [], "a session outlived the reset"
        await services.admin.set_password("bob@example.com", OLD)
