"""Authenticating access tokens, and logging out (current session or all of them)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engage_core import AccessClaims, LogoutScope, NotFound, Principal, Unauthorized


async def test_a_valid_access_token_yields_its_principal(auth, alice, log_in):
    login = await log_in(alice)

    principal = await auth.authenticate(login.access_token)

    assert principal == Principal(alice.id, login.session_id)


@pytest.mark.parametrize("token", ["", "garbage", "fake.not-issued-here"])
async def test_a_token_that_was_never_issued_is_refused(auth, token):
    with pytest.raises(Unauthorized):
        await auth.authenticate(token)


async def test_an_access_token_works_until_just_before_the_access_ttl(
    accepted, alice, log_in, clock, policy
):
    login = await log_in(alice)

    clock.advance(policy.access_ttl - timedelta(seconds=1))

    assert await accepted(login.access_token)


async def test_an_expired_access_token_is_refused(auth, alice, log_in, clock, policy):
    login = await log_in(alice)

    clock.advance(policy.access_ttl + timedelta(seconds=1))

    with pytest.raises(Unauthorized):
        await auth.authenticate(login.access_token)


async def test_an_expired_token_flavour_grant_is_refused(auth, alice, clock, policy):
    grant = await auth.issue_token(email=alice.email, password=alice.password)

    clock.advance(timedelta(seconds=grant.expires_in + 1))

    with pytest.raises(Unauthorized):
        await auth.authenticate(grant.access_token)


async def test_log_out_refuses_the_token_at_once(auth, alice, log_in, principal_of):
    login = await log_in(alice)
    assert await auth.authenticate(login.access_token)

    await auth.log_out(principal_of(login))

    with pytest.raises(Unauthorized):
        await auth.authenticate(login.access_token)


async def test_log_out_ends_the_refresh_token_too(auth, alice, log_in, principal_of):
    login = await log_in(alice)

    await auth.log_out(principal_of(login), LogoutScope.CURRENT)

    with pytest.raises(Unauthorized):
        await auth.refresh(login.refresh_token)


async def test_log_out_of_the_current_session_keeps_the_users_other_sessions(
    auth, alice, log_in, principal_of, accepted
):
    leaving = await log_in(alice)
    staying = await log_in(alice)
    grant = await auth.issue_token(email=alice.email, password=alice.password)

    await auth.log_out(principal_of(leaving), LogoutScope.CURRENT)

    assert not await accepted(leaving.access_token)
    assert await accepted(staying.access_token)
    assert await accepted(grant.access_token)


async def test_log_out_of_a_token_flavour_session_refuses_its_token(auth, alice, accepted):
    grant = await auth.issue_token(email=alice.email, password=alice.password)
    principal = await auth.authenticate(grant.access_token)

    await auth.log_out(principal)

    assert not await accepted(grant.access_token)


async def test_log_out_all_ends_every_session_of_the_user_but_not_other_users(
    auth, alice, bob, log_in, principal_of, accepted, refreshable
):
    first = await log_in(alice)
    second = await log_in(alice)
    grant = await auth.issue_token(email=alice.email, password=alice.password)
    bobs = await log_in(bob)

    await auth.log_out(principal_of(first), LogoutScope.ALL)

    assert not await accepted(first.access_token)
    assert not await accepted(second.access_token)
    assert not await accepted(grant.access_token)
    assert not await refreshable(second.refresh_token)
    assert await accepted(bobs.access_token)
    assert await refreshable(bobs.refresh_token)


async def test_a_user_can_log_in_again_after_logging_out_everywhere(
    auth, alice, log_in, principal_of, accepted
):
    login = await log_in(alice)
    await auth.log_out(principal_of(login), LogoutScope.ALL)

    again = await log_in(alice)

    assert await accepted(again.access_token)


@pytest.fixture
def forge_token(tokens, clock, policy):
    """An access token with any claims, as only a holder of the signing key could make."""

    def forge(*, user_id, session_id):
        return tokens.issue(
            AccessClaims(
                user_id=user_id,
                session_id=session_id,
                issued_at=clock.now(),
                expires_at=clock.now() + policy.access_ttl,
            )
        )

    return forge


async def test_a_token_naming_another_users_session_is_refused(
    alice, bob, log_in, forge_token, accepted
):
    alices = await log_in(alice)
    bobs = await log_in(bob)

    assert await accepted(await forge_token(user_id=alice.id, session_id=alices.session_id))
    assert not await accepted(await forge_token(user_id=alice.id, session_id=bobs.session_id))


async def test_refusing_a_token_naming_another_users_session_leaves_that_session_live(
    alice, bob, log_in, forge_token, accepted
):
    bobs = await log_in(bob)

    assert not await accepted(await forge_token(user_id=alice.id, session_id=bobs.session_id))

    assert await accepted(bobs.access_token)


async def test_a_device_ended_meanwhile_is_not_ended_twice(
    auth, alice, log_in, principal_of, sessions, clock, monkeypatch
):
    laptop = await log_in(alice)
    phone = await log_in(alice)
    phone_session = await sessions.get(phone.session_id)
    listed = await sessions.live_devices(alice.id, clock.now())
    await auth.end_device(principal_of(laptop), phone_session.family_id)

    # A second request that found the device live before the first one ended it.
    async def as_listed_before(*_: object) -> object:
        return listed

    monkeypatch.setattr(sessions, "live_devices", as_listed_before)

    with pytest.raises(NotFound):
        await auth.end_device(principal_of(laptop), phone_session.family_id)
