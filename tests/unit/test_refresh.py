"""Refreshing a browser session: rotation, reuse detection, expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from engage_core import BrowserLogin, LogoutScope, Unauthorized


async def test_refresh_rotates_the_refresh_token(auth, alice, log_in, clock, policy):
    login = await log_in(alice)
    clock.advance(timedelta(minutes=5))

    renewed = await auth.refresh(login.refresh_token)

    assert isinstance(renewed, BrowserLogin)
    assert renewed.user.id == alice.id
    assert renewed.refresh_token != login.refresh_token
    assert renewed.access_token != login.access_token
    assert renewed.session_id != login.session_id
    assert renewed.access_expires_at == clock.now() + policy.access_ttl
    assert renewed.refresh_expires_at == clock.now() + policy.refresh_ttl


async def test_refresh_refuses_the_rotated_sessions_access_token_and_accepts_the_new_one(
    auth, alice, log_in, accepted
):
    login = await log_in(alice)

    renewed = await auth.refresh(login.refresh_token)

    assert not await accepted(login.access_token)
    assert await accepted(renewed.access_token)
    principal = await auth.authenticate(renewed.access_token)
    assert principal.session_id == renewed.session_id


async def test_a_refresh_token_can_be_refreshed_again_and_again(auth, alice, log_in, accepted):
    login = await log_in(alice)

    for _ in range(3):
        login = await auth.refresh(login.refresh_token)

    assert await accepted(login.access_token)


async def test_a_refresh_token_used_twice_is_refused(auth, alice, log_in):
    login = await log_in(alice)
    await auth.refresh(login.refresh_token)

    with pytest.raises(Unauthorized):
        await auth.refresh(login.refresh_token)


async def test_refresh_token_reuse_ends_the_whole_family(
    auth, alice, log_in, accepted, refreshable
):
    login = await log_in(alice)
    newest = await auth.refresh(login.refresh_token)

    with pytest.raises(Unauthorized):
        await auth.refresh(login.refresh_token)

    assert not await accepted(newest.access_token)
    assert not await refreshable(newest.refresh_token)


async def test_refresh_token_reuse_ends_the_family_even_after_several_rotations(
    auth, alice, log_in, accepted, refreshable
):
    first = await log_in(alice)
    second = await auth.refresh(first.refresh_token)
    newest = await auth.refresh(second.refresh_token)

    assert not await refreshable(first.refresh_token)

    assert not await accepted(newest.access_token)
    assert not await refreshable(newest.refresh_token)


async def test_refresh_token_reuse_leaves_the_users_other_sessions_alone(
    auth, alice, log_in, accepted, refreshable
):
    stolen = await log_in(alice)
    other = await log_in(alice)
    await auth.refresh(stolen.refresh_token)

    assert not await refreshable(stolen.refresh_token)

    assert await accepted(other.access_token)
    assert await refreshable(other.refresh_token)


@pytest.mark.parametrize(
    "refresh_token",
    ["garbage", "", None, 42, b"bytes-token", ["list"], "x" * 257],
    ids=["garbage", "empty", "none", "int", "bytes", "list", "too-long"],
)
async def test_refresh_refuses_anything_but_an_issued_refresh_token(auth, alice, refresh_token):
    with pytest.raises(Unauthorized):
        await auth.refresh(refresh_token)


async def test_an_access_token_is_not_a_refresh_token(auth, alice, log_in):
    login = await log_in(alice)

    with pytest.raises(Unauthorized):
        await auth.refresh(login.access_token)


async def test_refresh_works_until_just_before_the_refresh_ttl(
    auth, alice, log_in, clock, policy, accepted
):
    login = await log_in(alice)
    clock.advance(policy.refresh_ttl - timedelta(seconds=1))

    renewed = await auth.refresh(login.refresh_token)

    assert await accepted(renewed.access_token)


async def test_refresh_after_the_refresh_ttl_is_refused(auth, alice, log_in, clock, policy):
    login = await log_in(alice)
    clock.advance(policy.refresh_ttl + timedelta(seconds=1))

    with pytest.raises(Unauthorized):
        await auth.refresh(login.refresh_token)


async def test_a_token_flavour_session_cannot_be_refreshed(auth, alice, accepted):
    grant = await auth.issue_token(email=alice.email, password=alice.password)

    with pytest.raises(Unauthorized):
        await auth.refresh(grant.access_token)

    assert await accepted(grant.access_token)


async def test_refresh_after_log_out_is_refused_without_ending_other_families(
    auth, alice, log_in, principal_of, accepted
):
    leaving = await log_in(alice)
    staying = await log_in(alice)
    await auth.log_out(principal_of(leaving), LogoutScope.CURRENT)

    with pytest.raises(Unauthorized):
        await auth.refresh(leaving.refresh_token)

    assert await accepted(staying.access_token)


async def test_two_refreshes_racing_with_one_token_end_the_family(auth, alice, log_in, accepted):
    login = await log_in(alice)

    results = await asyncio.gather(
        auth.refresh(login.refresh_token),
        auth.refresh(login.refresh_token),
        return_exceptions=True,
    )

    winners = [r for r in results if isinstance(r, BrowserLogin)]
    losers = [r for r in results if isinstance(r, Unauthorized)]
    assert (len(winners), len(losers)) == (1, 1)
    assert not await accepted(winners[0].access_token)
