"""The second factor's rules over the fakes: the code window, single use, challenges,
recovery codes, and what the activity log records of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import attrs
import pytest
from attrs import frozen
from hypothesis import given
from hypothesis import strategies as st

from engage_core import AuthService, BrowserLogin, Principal, testing
from engage_core.errors import (
    ChallengeEnded,
    Conflict,
    Forbidden,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from engage_core.model import ActivityKind, Client
from engage_core.ports import ActivityQuery
from engage_core.queries import CursorCodec
from engage_core.services.activity import ActivityLog
from engage_core.services.auth import AccessGrant, AuthPolicy
from engage_core.services.mfa import (
    MfaRequired,
    MfaService,
    TotpVerifier,
    matching_step,
    recovery_code_hash,
    step_at,
)

PASSWORD = "a long enough password"
PHONE = Client(ip="198.51.100.7", user_agent="Phone")


def _code_for(step: int) -> str:
    return f"{step % 1_000_000:06d}"


@given(
    current=st.integers(min_value=10, max_value=10**9),
    offset=st.integers(min_value=-3, max_value=3),
)
def test_a_code_is_accepted_within_one_step_either_way_and_not_beyond(
    current: int, offset: int
) -> None:
    found = matching_step(
        _code_for(current + offset),
        current_step=current,
        last_step=None,
        skew=1,
        code_for=_code_for,
    )

    assert found == (current + offset if abs(offset) <= 1 else None)


@given(
    current=st.integers(min_value=10, max_value=10**9),
    offset=st.integers(min_value=-1, max_value=1),
    used=st.integers(min_value=-2, max_value=2),
)
def test_no_code_of_a_used_step_or_an_earlier_one_is_accepted(
    current: int, offset: int, used: int
) -> None:
    step = current + offset
    last_step = current + used

    found = matching_step(
        _code_for(step), current_step=current, last_step=last_step, skew=1, code_for=_code_for
    )

    assert found == (step if step > last_step else None)


@given(st.text(max_size=40))
def test_a_recovery_code_hash_takes_only_what_a_code_can_be(text: str) -> None:
    code_hash = recovery_code_hash(text)

    if code_hash is not None:
        assert len(code_hash) == 64
        assert recovery_code_hash(text.upper().replace("-", " ")) == code_hash


# --- the use cases over the fakes ---------------------------------------------------------


@frozen
class World:
    clock: testing.FakeClock
    auth: AuthService
    mfa: MfaService
    codes: testing.FakeOneTimePasswords
    activity: testing.InMemoryActivityRepository
    factors: testing.InMemorySecondFactorRepository

    def code(self, secret: str, steps_from_now: int = 0) -> str:
        return self.codes.code(secret, step_at(self.clock.now()) + steps_from_now)

    async def kinds(self, user_id: object) -> list[str]:
        found = await self.activity.page(ActivityQuery(user_id=user_id))  # type: ignore[arg-type]
        return [entry.kind.value for entry in found]


@pytest.fixture
def world() -> World:
    clock = testing.FakeClock()
    users, sessions = testing.InMemoryUserRepository(), testing.InMemorySessionRepository()
    factors, activity = (
        testing.InMemorySecondFactorRepository(),
        testing.InMemoryActivityRepository(),
    )
    testing.link_cascade(users, sessions, factors, activity)
    uow = testing.InMemoryUnitOfWork(users, sessions, factors, activity)
    log = ActivityLog(activity, clock, CursorCodec(b"c" * 32))
    codes = testing.FakeOneTimePasswords()
    verifier = TotpVerifier(
        factors=factors, codes=codes, box=testing.FakeSecretBox(), clock=clock, activity=log
    )
    auth = AuthService(
        users=users,
        sessions=sessions,
        hasher=testing.FakePasswordHasher(),
        tokens=testing.FakeTokenIssuer(clock),
        cache=testing.InMemoryCache(clock),
        limiter=testing.InMemoryRateLimiter(clock),
        clock=clock,
        uow=uow,
        policy=AuthPolicy(login_failures_per_email=7),
        second_factor=verifier,
        activity=log,
    )
    return World(
        clock, auth, MfaService(verifier=verifier, auth=auth, uow=uow), codes, activity, factors
    )


async def _signed_in(world: World) -> Principal:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    login = await world.auth.log_in(email="ada@example.com", password=PASSWORD)
    assert isinstance(login, BrowserLogin)
    return Principal(login.user.id, login.session_id)


async def _with_mfa(world: World) -> tuple[Principal, str, list[str]]:
    principal = await _signed_in(world)
    enrolment = await world.mfa.begin_totp(principal)
    codes = await world.mfa.confirm_totp(principal, world.code(enrolment.secret, -1), PHONE)
    return principal, enrolment.secret, codes


async def _challenge(world: World, *, token: bool = False) -> str:
    call = world.auth.issue_token if token else world.auth.log_in
    pending = await call(email="ada@example.com", password=PASSWORD, client=PHONE)
    assert isinstance(pending, MfaRequired)
    return pending.challenge


async def test_set_up_is_off_until_a_correct_code_confirms_it(world: World) -> None:
    principal = await _signed_in(world)
    enrolment = await world.mfa.begin_totp(principal)

    with pytest.raises(Forbidden):
        await world.mfa.confirm_totp(principal, world.code(enrolment.secret, 2), PHONE)
    assert await world.mfa.status(principal) == (False, 0)
    assert isinstance(
        await world.auth.log_in(email="ada@example.com", password=PASSWORD), BrowserLogin
    )

    codes = await world.mfa.confirm_totp(principal, world.code(enrolment.secret), PHONE)

    assert len(set(codes)) == 10
    assert await world.mfa.status(principal) == (True, 10)
    with pytest.raises(Conflict):
        await world.mfa.begin_totp(principal)
    stored = await world.factors.get(principal.user_id)
    assert stored is not None
    assert enrolment.secret not in stored.sealed_secret


async def test_login_and_token_wait_for_a_code_and_a_code_finishes_each(world: World) -> None:
    _, secret, _ = await _with_mfa(world)

    browser = await world.mfa.verify_login(
        challenge=await _challenge(world), code=world.code(secret), client=PHONE
    )
    bearer = await world.mfa.verify_login(
        challenge=await _challenge(world, token=True), code=world.code(secret, 1), client=PHONE
    )

    assert isinstance(browser, BrowserLogin)
    assert isinstance(bearer, AccessGrant)
    assert (await world.auth.authenticate(bearer.access_token)).user_id == browser.user.id


async def test_a_code_typed_with_spaces_as_apps_show_it_is_the_code(world: World) -> None:
    _, secret, _ = await _with_mfa(world)
    code = world.code(secret)

    login = await world.mfa.verify_login(
        challenge=await _challenge(world), code=f" {code[:3]} {code[3:]}\t", client=PHONE
    )

    assert isinstance(login, BrowserLogin)


async def test_a_secret_no_key_opens_is_unavailable_not_a_crash(world: World) -> None:
    principal, _, _ = await _with_mfa(world)
    factor = await world.factors.get(principal.user_id)
    assert factor is not None
    world.factors._factors[principal.user_id] = attrs.evolve(factor, sealed_secret="other-key")
    challenge = await _challenge(world)

    with pytest.raises(Unavailable) as refused:
        await world.mfa.verify_login(challenge=challenge, code="000000", client=PHONE)
    assert refused.value.retry_after == 60
    assert str(principal.user_id) in refused.value.reason


async def test_a_challenge_is_spent_by_its_success(world: World) -> None:
    _, secret, codes = await _with_mfa(world)
    challenge = await _challenge(world)
    await world.mfa.verify_login(challenge=challenge, code=world.code(secret), client=PHONE)

    with pytest.raises(Unauthorized):
        await world.mfa.verify_login(challenge=challenge, code=codes[0], client=PHONE)


async def _change_password(world: World, principal: Principal) -> None:
    await world.auth.change_password(
        principal, current_password=PASSWORD, new_password="another long password"
    )


async def _end_sessions(world: World, principal: Principal) -> None:
    # What a reset by link, the operator's set-password and logout-all do.
    async with world.auth.uow.atomic():
        await world.auth.end_sessions_of(principal.user_id, reason="password reset")


@pytest.mark.parametrize("change", [_change_password, _end_sessions])
async def test_a_login_waiting_for_its_code_ends_with_the_password_it_was_opened_on(
    world: World, change: Callable[[World, Principal], Awaitable[None]]
) -> None:
    principal, secret, _ = await _with_mfa(world)
    waiting = await _challenge(world)

    await change(world, principal)

    with pytest.raises(Unauthorized):
        await world.mfa.verify_login(challenge=waiting, code=world.code(secret), client=PHONE)
    assert await world.factors.end_challenges_of(principal.user_id) == 0


async def test_a_challenge_allows_five_attempts_and_five_minutes(world: World) -> None:
    _, secret, _ = await _with_mfa(world)
    challenge = await _challenge(world)
    for _ in range(5):
        with pytest.raises(Unauthorized) as wrong:
            await world.mfa.verify_login(challenge=challenge, code="000000", client=PHONE)
        assert not isinstance(wrong.value, ChallengeEnded)  # another code may do
    with pytest.raises(ChallengeEnded):
        await world.mfa.verify_login(challenge=challenge, code=world.code(secret), client=PHONE)

    late = await _challenge(world)
    world.clock.advance(timedelta(minutes=5, seconds=1))
    with pytest.raises(ChallengeEnded):
        await world.mfa.verify_login(challenge=late, code=world.code(secret), client=PHONE)


async def test_wrong_codes_lock_the_email_like_wrong_passwords_until_unlocked(
    world: World,
) -> None:
    principal, _, _ = await _with_mfa(world)
    for attempts in (5, 2):
        challenge = await _challenge(world)
        for _ in range(attempts):
            with pytest.raises(Unauthorized):
                await world.mfa.verify_login(challenge=challenge, code="000000", client=PHONE)

    with pytest.raises(RateLimited):
        await world.auth.log_in(email="ada@example.com", password=PASSWORD)
    email = (await world.auth.me(principal)).email
    with pytest.raises(RateLimited):
        await world.auth.check_not_locked(email, PHONE)

    await world.auth.unlock(email)

    assert isinstance(
        await world.auth.log_in(email="ada@example.com", password=PASSWORD), MfaRequired
    )


async def test_a_recovery_code_works_once_and_is_recorded(world: World) -> None:
    principal, _, codes = await _with_mfa(world)

    done = await world.mfa.verify_login(
        challenge=await _challenge(world), code=codes[3].upper(), client=PHONE
    )

    assert isinstance(done, BrowserLogin)
    with pytest.raises(Unauthorized):
        await world.mfa.verify_login(challenge=await _challenge(world), code=codes[3], client=PHONE)
    assert await world.mfa.status(principal) == (True, 9)
    assert (await world.kinds(principal.user_id))[:3] == [
        "login.failed",
        "login",
        "mfa.recovery_used",
    ]


async def test_disable_and_new_codes_need_the_password_and_a_code(world: World) -> None:
    principal, secret, old = await _with_mfa(world)

    with pytest.raises(Forbidden):
        await world.mfa.disable(
            principal, password="wrong password!", code=world.code(secret), client=PHONE
        )
    with pytest.raises(Forbidden):
        await world.mfa.regenerate_recovery_codes(
            principal, password=PASSWORD, code="000000", client=PHONE
        )
    new = await world.mfa.regenerate_recovery_codes(
        principal, password=PASSWORD, code=old[0], client=PHONE
    )
    with pytest.raises(Forbidden):
        await world.mfa.disable(principal, password=PASSWORD, code=old[1], client=PHONE)
    await world.mfa.disable(principal, password=PASSWORD, code=new[0], client=PHONE)

    assert await world.mfa.status(principal) == (False, 0)
    assert isinstance(
        await world.auth.log_in(email="ada@example.com", password=PASSWORD), BrowserLogin
    )
    assert "mfa.disabled" in await world.kinds(principal.user_id)


async def test_the_operators_reset_turns_it_off_and_is_recorded(world: World) -> None:
    principal, _, _ = await _with_mfa(world)
    user = await world.auth.me(principal)

    assert await world.mfa.reset(user) is True
    assert await world.mfa.reset(user) is False

    entries = await world.activity.page(ActivityQuery(user_id=user.id))
    assert (entries[0].kind, entries[0].client.user_agent) == (
        ActivityKind.MFA_RESET,
        "engage CLI (operator)",
    )


async def test_an_entry_commits_with_the_change_it_records(world: World) -> None:
    class Refusing(testing.InMemoryActivityRepository):
        async def add(self, entry: object) -> None:  # type: ignore[override]
            raise RuntimeError("the log is unavailable")

    world.auth.activity.entries = Refusing()  # type: ignore[union-attr]

    with pytest.raises(RuntimeError):
        await world.auth.sign_up(email="ada@example.com", password=PASSWORD)

    assert await world.auth.users.get_by_email("ada@example.com") is None


async def test_use_writes_last_seen_at_most_once_a_minute(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    grant = await world.auth.issue_token(email="ada@example.com", password=PASSWORD)
    assert isinstance(grant, AccessGrant)
    principal = await world.auth.authenticate(grant.access_token)
    signed_in = world.clock.now()

    async def last_seen() -> object:
        session = await world.auth.sessions.get(principal.session_id)
        assert session is not None
        return session.last_seen_at

    world.clock.advance(59)
    await world.auth.authenticate(grant.access_token)
    assert await last_seen() == signed_in
    world.clock.advance(2)
    await world.auth.authenticate(grant.access_token)
    assert await last_seen() == signed_in + timedelta(seconds=61)
