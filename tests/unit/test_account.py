"""The signed-in user's account: me, change_password, delete_account."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from engage_core import Forbidden, Principal, RateLimited, Unauthorized, ValidationFailed, testing
from engage_core.model import Password

NEW_PASSWORD = "a-brand-new-password"


async def test_me_returns_the_signed_in_user(auth, alice, log_in, principal_of):
    login = await log_in(alice)

    me = await auth.me(principal_of(login))

    assert me.id == alice.id
    assert me.email == alice.user.email
    assert me.created_at == alice.user.created_at


async def test_me_for_a_deleted_user_is_unauthorized(auth, alice, log_in, principal_of, users):
    login = await log_in(alice)
    await users.delete(alice.id)

    with pytest.raises(Unauthorized):
        await auth.me(principal_of(login))


# --- change_password ----------------------------------------------------------------------


async def test_change_password_with_a_wrong_current_password_is_forbidden(
    auth, alice, log_in, principal_of, users
):
    login = await log_in(alice)

    with pytest.raises(Forbidden):
        await auth.change_password(
            principal_of(login), current_password="not-it-at-all", new_password=NEW_PASSWORD
        )

    stored = await users.get(alice.id)
    assert stored is not None
    assert stored.password_hash == alice.user.password_hash


class _MeetingHasher(testing.FakePasswordHasher):
    """Hashes only once ``parties`` callers are hashing: they all checked the old
    password before any of them stores a new one."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self._waiting = parties
        self._met = asyncio.Event()

    async def hash(self, password: Password) -> str:
        self._waiting -= 1
        if self._waiting <= 0:
            self._met.set()
        await self._met.wait()
        return await super().hash(password)


async def test_of_two_changes_from_the_same_password_at_once_one_wins(
    make_auth, alice, log_in, principal_of, users, hasher
):
    principal = principal_of(await log_in(alice))
    racing = make_auth(_MeetingHasher(parties=2))

    outcomes = await asyncio.gather(
        racing.change_password(
            principal, current_password=alice.password, new_password="first one"
        ),
        racing.change_password(
            principal, current_password=alice.password, new_password="second one"
        ),
        return_exceptions=True,
    )

    assert sorted(type(o).__name__ for o in outcomes) == ["Forbidden", "NoneType"]
    winner = "first one" if outcomes[0] is None else "second one"
    stored = await users.get(alice.id)
    assert stored is not None
    assert await hasher.verify(Password(winner), stored.password_hash)


@pytest.mark.parametrize("new_password", ["short", "", None, 12345678, "x" * 257])
async def test_change_password_to_an_invalid_one_names_new_password(
    auth, alice, log_in, principal_of, users, new_password
):
    login = await log_in(alice)

    with pytest.raises(ValidationFailed) as caught:
        await auth.change_password(
            principal_of(login), current_password=alice.password, new_password=new_password
        )

    assert [e.field for e in caught.value.errors] == ["new_password"]
    stored = await users.get(alice.id)
    assert stored is not None
    assert stored.password_hash == alice.user.password_hash


async def test_change_password_replaces_the_password(auth, alice, log_in, principal_of):
    login = await log_in(alice)

    await auth.change_password(
        principal_of(login), current_password=alice.password, new_password=NEW_PASSWORD
    )

    with pytest.raises(Unauthorized):
        await auth.log_in(email=alice.email, password=alice.password)
    again = await auth.log_in(email=alice.email, password=NEW_PASSWORD)
    assert again.user.id == alice.id


async def test_change_password_stores_a_hash_of_the_new_password(
    auth, alice, log_in, principal_of, users, clock
):
    login = await log_in(alice)
    clock.advance(60)

    await auth.change_password(
        principal_of(login), current_password=alice.password, new_password=NEW_PASSWORD
    )

    stored = await users.get(alice.id)
    assert stored is not None
    assert NEW_PASSWORD not in stored.password_hash
    assert stored.updated_at == clock.now()


async def test_change_password_keeps_the_current_session(
    auth, alice, log_in, principal_of, accepted, refreshable
):
    login = await log_in(alice)

    await auth.change_password(
        principal_of(login), current_password=alice.password, new_password=NEW_PASSWORD
    )

    assert await accepted(login.access_token)
    assert await refreshable(login.refresh_token)


async def test_password_change_ends_other_sessions(
    auth, alice, bob, log_in, principal_of, accepted, refreshable
):
    current = await log_in(alice)
    other = await log_in(alice)
    grant = await auth.issue_token(email=alice.email, password=alice.password)
    bobs = await log_in(bob)

    await auth.change_password(
        principal_of(current), current_password=alice.password, new_password=NEW_PASSWORD
    )

    assert not await accepted(other.access_token)
    assert not await accepted(grant.access_token)
    assert not await refreshable(other.refresh_token)
    assert await accepted(bobs.access_token)


async def test_password_change_from_a_refreshed_session_keeps_it(
    auth, alice, log_in, principal_of, accepted
):
    login = await log_in(alice)
    renewed = await auth.refresh(login.refresh_token)

    await auth.change_password(
        principal_of(renewed), current_password=alice.password, new_password=NEW_PASSWORD
    )

    assert await accepted(renewed.access_token)


async def test_repeated_wrong_current_passwords_are_rate_limited(auth, alice, log_in, principal_of):
    principal = principal_of(await log_in(alice))
    for _ in range(5):
        with pytest.raises(Forbidden):
            await auth.change_password(
                principal, current_password="not-it-at-all", new_password=NEW_PASSWORD
            )

    with pytest.raises(RateLimited):
        await auth.change_password(
            principal, current_password=alice.password, new_password=NEW_PASSWORD
        )


# --- delete_account -----------------------------------------------------------------------


@pytest.fixture
async def alice_with_data(alice, log_in, metrics):
    login = await log_in(alice)
    await metrics.record(alice.id, metric_type="page_view", metric_value=1)
    await metrics.record(alice.id, metric_type="page_view", metric_value=2)
    return login


@pytest.mark.parametrize("password", ["not-alices-password", "", None])
async def test_delete_account_with_a_wrong_password_is_forbidden_and_deletes_nothing(
    auth, alice, alice_with_data, principal_of, users, metrics, accepted, password
):
    login = alice_with_data

    with pytest.raises(Forbidden):
        await auth.delete_account(principal_of(login), password=password)

    assert await users.get(alice.id) is not None
    assert len((await metrics.list(alice.id)).items) == 2
    assert await accepted(login.access_token)


async def test_delete_account_removes_the_user(auth, alice, alice_with_data, principal_of, users):
    await auth.delete_account(principal_of(alice_with_data), password=alice.password)

    assert await users.get(alice.id) is None
    assert await users.get_by_email("alice@example.com") is None


async def test_delete_account_removes_their_metrics(
    auth, alice, alice_with_data, principal_of, metrics
):
    await auth.delete_account(principal_of(alice_with_data), password=alice.password)

    page = await metrics.list(alice.id)
    assert page.items == ()
    summary = await metrics.summary(alice.id)
    assert summary.series == ()


async def test_delete_account_refuses_all_their_tokens(
    auth, alice, alice_with_data, log_in, principal_of, accepted, refreshable
):
    other = await log_in(alice)
    grant = await auth.issue_token(email=alice.email, password=alice.password)

    await auth.delete_account(principal_of(alice_with_data), password=alice.password)

    assert not await accepted(alice_with_data.access_token)
    assert not await accepted(other.access_token)
    assert not await accepted(grant.access_token)
    assert not await refreshable(alice_with_data.refresh_token)
    assert not await refreshable(other.refresh_token)


async def test_a_deleted_account_cannot_log_in(auth, alice, alice_with_data, principal_of):
    await auth.delete_account(principal_of(alice_with_data), password=alice.password)

    with pytest.raises(Unauthorized):
        await auth.log_in(email=alice.email, password=alice.password)


async def test_the_email_of_a_deleted_account_can_sign_up_again(
    auth, alice, alice_with_data, principal_of, metrics, accepted
):
    await auth.delete_account(principal_of(alice_with_data), password=alice.password)

    reborn = await auth.sign_up(email="Alice@Example.com", password="a-fresh-start")
    login = await auth.log_in(email=alice.email, password="a-fresh-start")

    assert reborn.id != alice.id
    assert await accepted(login.access_token)
    assert (await metrics.list(reborn.id)).items == ()
    assert not await accepted(alice_with_data.access_token)


async def test_delete_account_leaves_other_users_untouched(
    auth, alice, bob, alice_with_data, log_in, principal_of, users, metrics, accepted, refreshable
):
    bobs = await log_in(bob)
    await metrics.record(bob.id, metric_type="page_view", metric_value=7)

    await auth.delete_account(principal_of(alice_with_data), password=alice.password)

    assert await users.get(bob.id) is not None
    assert [m.metric_value.value for m in (await metrics.list(bob.id)).items] == [7]
    assert await accepted(bobs.access_token)
    assert await refreshable(bobs.refresh_token)
    assert (await auth.log_in(email=bob.email, password=bob.password)).user.id == bob.id


async def test_delete_account_of_a_principal_whose_user_is_gone_is_unauthorized(auth):
    with pytest.raises(Unauthorized):
        await auth.delete_account(Principal(uuid4(), uuid4()), password="whatever-password")
