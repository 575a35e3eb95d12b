"""Logging in: the browser flavour (log_in) and the token flavour (issue_token)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engage_core import AccessGrant, BrowserLogin, Password, RateLimited, Unauthorized
from engage_core.testing import FakePasswordHasher

WINDOW = timedelta(minutes=15)


async def fail_login(auth, email, times):
    for _ in range(times):
        with pytest.raises(Unauthorized):
            await auth.log_in(email=email, password="wrong-password")


# --- success ------------------------------------------------------------------------------


async def test_browser_login_hands_out_access_and_refresh_tokens(auth, alice, clock, policy):
    login = await auth.log_in(email=alice.email, password=alice.password)

    assert isinstance(login, BrowserLogin)
    assert login.user.id == alice.id
    assert login.access_token
    assert login.refresh_token
    assert login.access_token != login.refresh_token
    assert login.access_expires_at == clock.now() + policy.access_ttl
    assert login.refresh_expires_at == clock.now() + policy.refresh_ttl


async def test_browser_login_access_token_authenticates_its_session(auth, alice):
    login = await auth.log_in(email=alice.email, password=alice.password)

    principal = await auth.authenticate(login.access_token)

    assert principal.user_id == alice.id
    assert principal.session_id == login.session_id


async def test_login_email_is_compared_case_insensitively(auth, alice):
    login = await auth.log_in(email="ALICE@Example.Com", password=alice.password)

    assert login.user.id == alice.id


async def test_each_login_starts_a_session_of_its_own(auth, alice):
    first = await auth.log_in(email=alice.email, password=alice.password)
    second = await auth.log_in(email=alice.email, password=alice.password)

    assert first.session_id != second.session_id
    assert first.refresh_token != second.refresh_token


async def test_token_login_grants_an_access_token_for_the_access_ttl(auth, alice, clock, policy):
    grant = await auth.issue_token(email=alice.email, password=alice.password)

    assert isinstance(grant, AccessGrant)
    assert grant.expires_in == int(policy.access_ttl.total_seconds()) == 900
    assert grant.expires_at == clock.now() + policy.access_ttl
    principal = await auth.authenticate(grant.access_token)
    assert principal.user_id == alice.id


# --- bad credentials ----------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["log_in", "issue_token"])
async def test_wrong_password_and_unknown_email_are_refused_alike(auth, alice, flavour):
    attempt = getattr(auth, flavour)
    with pytest.raises(Unauthorized) as wrong_password:
        await attempt(email=alice.email, password="not-alices-password")
    with pytest.raises(Unauthorized) as unknown_email:
        await attempt(email="nobody@example.com", password=alice.password)

    assert wrong_password.value.detail == unknown_email.value.detail
    assert str(wrong_password.value) == str(unknown_email.value)


@pytest.mark.parametrize("flavour", ["log_in", "issue_token"])
async def test_unknown_email_still_checks_a_dummy_hash(auth, hasher, flavour):
    before = hasher.verify_calls

    with pytest.raises(Unauthorized):
        await getattr(auth, flavour)(email="nobody@example.com", password="some-password")

    assert hasher.verify_calls == before + 1


async def test_wrong_password_checks_exactly_one_hash(auth, alice, hasher):
    before = hasher.verify_calls

    with pytest.raises(Unauthorized):
        await auth.log_in(email=alice.email, password="not-alices-password")

    assert hasher.verify_calls == before + 1


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("not-an-email", "alice-password-1"),
        ("alice@example.com", "short"),
        (None, None),
        (42, ["alice-password-1"]),
    ],
)
async def test_malformed_credentials_are_refused_as_bad_credentials(auth, alice, email, password):
    with pytest.raises(Unauthorized) as caught:
        await auth.log_in(email=email, password=password)

    assert caught.value.detail == "invalid email or password"


async def test_a_failed_login_starts_no_session(auth, alice, sessions, clock):
    with pytest.raises(Unauthorized):
        await auth.log_in(email=alice.email, password="not-alices-password")

    assert await sessions.live_devices(alice.id, clock.now()) == []


# --- failed-login limit -------------------------------------------------------------------


async def test_sixth_login_after_five_failures_is_rate_limited_even_with_the_right_password(
    auth, alice
):
    await fail_login(auth, alice.email, times=5)

    with pytest.raises(RateLimited) as caught:
        await auth.log_in(email=alice.email, password=alice.password)

    assert 0 < caught.value.retry_after <= WINDOW.total_seconds()


async def test_four_failures_do_not_lock_the_email(auth, alice):
    await fail_login(auth, alice.email, times=4)

    login = await auth.log_in(email=alice.email, password=alice.password)

    assert login.user.id == alice.id


async def test_token_login_shares_the_failed_login_limit(auth, alice):
    await fail_login(auth, alice.email, times=5)

    with pytest.raises(RateLimited):
        await auth.issue_token(email=alice.email, password=alice.password)


async def test_login_works_again_after_the_failure_window(auth, alice, clock):
    await fail_login(auth, alice.email, times=5)
    clock.advance(WINDOW - timedelta(seconds=1))
    with pytest.raises(RateLimited):
        await auth.log_in(email=alice.email, password=alice.password)

    clock.advance(timedelta(seconds=2))
    login = await auth.log_in(email=alice.email, password=alice.password)

    assert login.user.id == alice.id


async def test_failed_logins_are_counted_per_email(auth, alice, bob):
    await fail_login(auth, alice.email, times=5)

    login = await auth.log_in(email=bob.email, password=bob.password)

    assert login.user.id == bob.id


async def test_failed_logins_count_for_the_email_in_any_letter_case(auth, alice):
    await fail_login(auth, "ALICE@example.com", times=3)
    await fail_login(auth, "Alice@EXAMPLE.COM", times=2)

    with pytest.raises(RateLimited):
        await auth.log_in(email=alice.email, password=alice.password)


async def test_failed_logins_for_an_unknown_email_are_limited_too(auth):
    await fail_login(auth, "nobody@example.com", times=5)

    with pytest.raises(RateLimited):
        await auth.log_in(email="nobody@example.com", password="wrong-password")


# --- rehash on login ----------------------------------------------------------------------


async def test_login_rehashes_a_hash_made_with_older_settings(make_auth, users):
    old_service = make_auth(FakePasswordHasher(rounds=1))
    user = await old_service.sign_up(email="carol@example.com", password="carol-password")
    new_hasher = FakePasswordHasher(rounds=2)
    new_service = make_auth(new_hasher)

    await new_service.log_in(email="carol@example.com", password="carol-password")

    stored = await users.get(user.id)
    assert stored is not None
    assert stored.password_hash != user.password_hash
    assert not new_hasher.needs_rehash(stored.password_hash)
    assert await new_hasher.verify(Password("carol-password"), stored.password_hash)
    again = await new_service.log_in(email="carol@example.com", password="carol-password")
    assert again.user.id == user.id


async def test_login_keeps_a_hash_made_with_current_settings(auth, alice, users, hasher):
    hashes_before = hasher.hash_calls

    await auth.log_in(email=alice.email, password=alice.password)

    stored = await users.get(alice.id)
    assert stored is not None
    assert stored.password_hash == alice.user.password_hash
    assert hasher.hash_calls == hashes_before


async def test_a_failed_login_never_rehashes(make_auth, users):
    old_service = make_auth(FakePasswordHasher(rounds=1))
    user = await old_service.sign_up(email="carol@example.com", password="carol-password")
    new_service = make_auth(FakePasswordHasher(rounds=2))

    with pytest.raises(Unauthorized):
        await new_service.log_in(email="carol@example.com", password="wrong-password")

    stored = await users.get(user.id)
    assert stored is not None
    assert stored.password_hash == user.password_hash
