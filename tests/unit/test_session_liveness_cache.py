"""Ending a session takes effect at once even where "live" answers are cached.

With a cache shared by every process, the composition root lets the service cache
"this session is live" for a while; every way of ending a session must overwrite
that answer.
"""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from engage_core import AccessClaims, LogoutScope, Unauthorized


@pytest.fixture
def auth(make_auth, hasher):
    """The service as wired over a cache every process shares: "live" kept a minute."""
    return attrs.evolve(make_auth(hasher), live_answer_ttl=60.0)


@pytest.fixture
async def cached_login(auth, alice, log_in):
    """A browser login whose "live" answer is now in the cache."""
    login = await log_in(alice)
    await auth.authenticate(login.access_token)
    return login


async def test_a_live_session_is_accepted_from_the_cache(auth, cached_login, accepted):
    assert await accepted(cached_login.access_token)


async def test_log_out_refuses_a_cached_session_at_once(auth, cached_login, principal_of, accepted):
    await auth.log_out(principal_of(cached_login), LogoutScope.CURRENT)

    assert not await accepted(cached_login.access_token)


async def test_log_out_all_refuses_every_cached_session_at_once(
    auth, alice, cached_login, log_in, principal_of, accepted
):
    other = await log_in(alice)
    await auth.authenticate(other.access_token)

    await auth.log_out(principal_of(cached_login), LogoutScope.ALL)

    assert not await accepted(cached_login.access_token)
    assert not await accepted(other.access_token)


async def test_refresh_refuses_the_rotated_cached_session_at_once(auth, cached_login, accepted):
    renewed = await auth.refresh(cached_login.refresh_token)

    assert not await accepted(cached_login.access_token)
    assert await accepted(renewed.access_token)


async def test_refresh_token_reuse_refuses_the_cached_newest_session_at_once(
    auth, cached_login, accepted
):
    renewed = await auth.refresh(cached_login.refresh_token)
    await auth.authenticate(renewed.access_token)

    with pytest.raises(Unauthorized):
        await auth.refresh(cached_login.refresh_token)

    assert not await accepted(renewed.access_token)


async def test_password_change_refuses_other_cached_sessions_at_once(
    auth, alice, cached_login, log_in, principal_of, accepted
):
    current = await log_in(alice)

    await auth.change_password(
        principal_of(current), current_password=alice.password, new_password="brand-new-password"
    )

    assert not await accepted(cached_login.access_token)
    assert await accepted(current.access_token)


async def test_account_deletion_refuses_cached_sessions_at_once(
    auth, alice, cached_login, principal_of, accepted
):
    await auth.delete_account(principal_of(cached_login), password=alice.password)

    assert not await accepted(cached_login.access_token)


async def test_a_cached_live_answer_does_not_outlast_the_session(
    auth, cached_login, tokens, clock, policy, accepted
):
    session_ends = clock.now() + policy.refresh_ttl
    # A token that outlives its session, so only the liveness check can refuse it.
    token = await tokens.issue(
        AccessClaims(
            user_id=cached_login.user.id,
            session_id=cached_login.session_id,
            issued_at=clock.now(),
            expires_at=session_ends + timedelta(days=1),
        )
    )
    clock.current = session_ends - timedelta(seconds=30)
    assert await accepted(token)

    clock.advance(timedelta(seconds=31))

    assert not await accepted(token)
