"""Use cases of several writes are all-or-nothing: a failing later step leaves
nothing of the earlier ones, and the cache is told nothing."""

from __future__ import annotations

import attrs
import pytest

from engage_core.services.admin import AccountAdmin
from support.faults import FailingOn, StepFailed

NEW_PASSWORD = "a-brand-new-password"


async def test_a_password_change_whose_sessions_cannot_end_keeps_the_old_password(
    auth, alice, log_in, principal_of, users, sessions, accepted, refreshable
):
    current = await log_in(alice)
    other = await log_in(alice)
    failing = attrs.evolve(auth, sessions=FailingOn(sessions, "end_all_for_user"))

    with pytest.raises(StepFailed):
        await failing.change_password(
            principal_of(current), current_password=alice.password, new_password=NEW_PASSWORD
        )

    stored = await users.get(alice.id)
    assert stored is not None
    assert stored.password_hash == alice.user.password_hash
    assert (await auth.log_in(email=alice.email, password=alice.password)).user.id == alice.id
    assert await accepted(other.access_token)
    assert await refreshable(other.refresh_token)


async def test_an_account_deletion_whose_user_cannot_go_keeps_every_session(
    auth, alice, log_in, principal_of, users, accepted, refreshable
):
    current = await log_in(alice)
    other = await log_in(alice)
    failing = attrs.evolve(auth, users=FailingOn(users, "delete"))

    with pytest.raises(StepFailed):
        await failing.delete_account(principal_of(current), password=alice.password)

    assert await users.get(alice.id) is not None
    assert await accepted(current.access_token)
    assert await accepted(other.access_token)
    assert await refreshable(other.refresh_token)


async def test_an_operators_set_password_whose_sessions_cannot_end_keeps_the_old_password(
    auth, alice, log_in, users, sessions, accepted
):
    login = await log_in(alice)
    admin = AccountAdmin(attrs.evolve(auth, sessions=FailingOn(sessions, "end_all_for_user")))

    with pytest.raises(StepFailed):
        await admin.set_password(alice.email, NEW_PASSWORD)

    stored = await users.get(alice.id)
    assert stored is not None
    assert stored.password_hash == alice.user.password_hash
    assert await accepted(login.access_token)


async def test_an_operators_delete_whose_user_cannot_go_keeps_every_session(
    auth, alice, log_in, users, accepted, refreshable
):
    login = await log_in(alice)
    admin = AccountAdmin(attrs.evolve(auth, users=FailingOn(users, "delete")))

    with pytest.raises(StepFailed):
        await admin.delete_user(alice.email)

    assert await users.get(alice.id) is not None
    assert await accepted(login.access_token)
    assert await refreshable(login.refresh_token)


async def test_an_operators_delete_ends_the_sessions_once_it_committed(
    auth, alice, log_in, users, accepted
):
    login = await log_in(alice)

    await AccountAdmin(auth).delete_user(alice.email)

    assert await users.get(alice.id) is None
    assert not await accepted(login.access_token)
