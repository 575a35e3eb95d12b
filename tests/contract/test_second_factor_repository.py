"""Contract of SecondFactorRepository: TOTP set-ups, recovery codes, login challenges."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from engage_core.model import Client, LoginPurpose, MfaChallenge, TotpFactor
from engage_core.ports import SecondFactorRepository
from engage_core.testing import FakeClock

if TYPE_CHECKING:
    from conftest import Subject


def _factor(user_id: UUID, clock: FakeClock, sealed: str = "sealed-1") -> TotpFactor:
    return TotpFactor(user_id=user_id, sealed_secret=sealed, created_at=clock.now())


async def test_a_set_up_is_pending_until_enabled(
    second_factor_repository: Subject[SecondFactorRepository], clock: FakeClock
) -> None:
    repo, user_id = second_factor_repository.impl, await second_factor_repository.new_user()
    assert await repo.get(user_id) is None

    assert await repo.begin(_factor(user_id, clock)) is True
    pending = await repo.get(user_id)
    assert pending is not None
    assert (pending.sealed_secret, pending.enabled, pending.last_step) == ("sealed-1", False, None)

    assert await repo.enable(user_id, clock.now(), step=7, recovery_code_hashes=["a", "b"])
    enabled = await repo.get(user_id)
    assert enabled is not None
    assert (enabled.enabled, enabled.last_step) == (True, 7)
    assert await repo.unused_recovery_codes(user_id) == 2


async def test_a_new_set_up_replaces_a_pending_one_but_not_an_enabled_one(
    second_factor_repository: Subject[SecondFactorRepository], clock: FakeClock
) -> None:
    repo, user_id = second_factor_repository.impl, await second_factor_repository.new_user()
    await repo.begin(_factor(user_id, clock, "first"))
    assert await repo.begin(_factor(user_id, clock, "second")) is True
    stored = await repo.get(user_id)
    assert stored is not None
    assert stored.sealed_secret == "second"

    await repo.enable(user_id, clock.now(), step=1, recovery_code_hashes=[])
    assert await repo.begin(_factor(user_id, clock, "third")) is False
    assert await repo.enable(user_id, clock.now(), step=2, recovery_code_hashes=[]) is False
    kept = await repo.get(user_id)
    assert kept is not None
    assert (kept.sealed_secret, kept.last_step) == ("second", 1)


async def test_a_step_is_used_once_and_never_an_older_one(
    second_factor_repository: Subject[SecondFactorRepository], clock: FakeClock
) -> None:
    repo, user_id = second_factor_repository.impl, await second_factor_repository.new_user()
    await repo.begin(_factor(user_id, clock))
    await repo.enable(user_id, clock.now(), step=10, recovery_code_hashes=[])

    assert await repo.use_step(user_id, 10) is False
    assert await repo.use_step(user_id, 9) is False
    assert await repo.use_step(user_id, 11) is True
    assert await repo.use_step(user_id, 11) is False


async def test_of_two_concurrent_uses_of_a_step_one_wins(
    second_factor_repository: Subject[SecondFactorRepository], clock: FakeClock
) -> None:
    repo, user_id = second_factor_repository.impl, await second_factor_repository.new_user()
    await repo.begin(_factor(user_id, clock))
    await repo.enable(user_id, clock.now(), step=1, recovery_code_hashes=["r"])

    steps = await asyncio.gather(*(repo.use_step(user_id, 5) for _ in range(5)))
    codes = await asyncio.gather(
        *(repo.use_recovery_code(user_id, "r", clock.now()) for _ in range(5))
    )

    assert sorted(steps) == [False] * 4 + [True]
    assert sorted(codes) == [False] * 4 + [True]


async def test_a_recovery_code_works_once_and_replacing_them_drops_the_old(
    second_factor_repository: Subject[SecondFactorRepository], clock: FakeClock
) -> None:
    repo, user_id = second_factor_repository.impl, await second_factor_repository.new_user()
    other = await second_factor_repository.new_user()
    await repo.begin(_factor(user_id, clock))
    await repo.enable(user_id, clock.now(), step=1, recovery_code_hashes=["a", "b"])

    assert await repo.use_recovery_code(other, "a", clock.now()) is False
    assert await repo.use_recovery_code(user_id, "a", clock.now()) is True
    assert await repo.use_recovery_code(user_id, "a", clock.now()) is False
    assert await repo.unused_recovery_codes(user_id) == 1

    await repo.replace_recovery_codes(user_id, ["c"])
    assert await repo.use_recovery_code(user_id, "b", clock.now()) is False
    assert await repo.unused_recovery_codes(user_id) == 1
    assert await repo.use_recovery_code(user_id, "c", clock.now()) is True


async def test_remove_deletes_the_set_up_and_its_codes(
    second_factor_repository: Subject[SecondFactorRepository], clock: FakeClock
) -> None:
    repo, user_id = second_factor_repository.impl, await second_factor_repository.new_user()
    await repo.begin(_factor(user_id, clock))
    await repo.enable(user_id, clock.now(), step=1, recovery_code_hashes=["a"])

    assert await repo.remove(user_id) is True
    assert await repo.remove(user_id) is False
    assert await repo.get(user_id) is None
    assert await repo.unused_recovery_codes(user_id) == 0
    assert await repo.begin(_factor(user_id, clock)) is True


def _challenge(user_id: UUID, clock: FakeClock, ttl: timedelta) -> MfaChallenge:
    return MfaChallenge(
        token_hash=f"challenge-{uuid4().hex}",
        user_id=user_id,
        purpose=LoginPurpose.TOKEN,
        client=Client(ip="192.0.2.1", user_agent="agent"),
        created_at=clock.now(),
        expires_at=clock.now() + ttl,
    )


async def test_a_challenge_allows_its_attempts_then_refuses(
    second_factor_repository: Subject[SecondFactorRepository], clock: FakeClock
) -> None:
    repo, user_id = second_factor_repository.impl, await second_factor_repository.new_user()
    challenge = _challenge(user_id, clock, timedelta(minutes=5))
    await repo.add_challenge(challenge)

    seen = [await repo.attempt_challenge(challenge.token_hash, clock.now(), max_attempts=3)]
    seen += [await repo.attempt_challenge(challenge.token_hash, clock.now(), max_attempts=3)]
    seen += [await repo.attempt_challenge(challenge.token_hash, clock.now(), max_attempts=3)]
    refused = await repo.attempt_challenge(challenge.token_hash, clock.now(), max_attempts=3)

    assert [c.attempts if c else None for c in seen] == [0, 1, 2]
    assert seen[0] is not None
    assert (seen[0].user_id, seen[0].purpose, seen[0].client) == (
        user_id,
        LoginPurpose.TOKEN,
        Client(ip="192.0.2.1", user_agent="agent"),
    )
    assert refused is None


async def test_a_users_challenges_end_together_and_no_one_elses(
    second_factor_repository: Subject[SecondFactorRepository], clock: FakeClock
) -> None:
    repo = second_factor_repository.impl
    user_id, other_id = (
        await second_factor_repository.new_user(),
        await second_factor_repository.new_user(),
    )
    mine = [_challenge(user_id, clock, timedelta(minutes=5)) for _ in range(2)]
    theirs = _challenge(other_id, clock, timedelta(minutes=5))
    for challenge in (*mine, theirs):
        await repo.add_challenge(challenge)

    assert await repo.end_challenges_of(user_id) == 2
    assert await repo.end_challenges_of(user_id) == 0
    now = clock.now()
    for challenge in mine:
        assert await repo.attempt_challenge(challenge.token_hash, now, max_attempts=5) is None
    assert await repo.attempt_challenge(theirs.token_hash, now, max_attempts=5) is not None


async def test_a_challenge_expires_and_ends_once(
    second_factor_repository: Subject[SecondFactorRepository], clock: FakeClock
) -> None:
    repo, user_id = second_factor_repository.impl, await second_factor_repository.new_user()
    short = _challenge(user_id, clock, timedelta(seconds=1))
    live = _challenge(user_id, clock, timedelta(minutes=5))
    await repo.add_challenge(short)
    await repo.add_challenge(live)
    later = clock.now() + timedelta(seconds=2)

    assert await repo.attempt_challenge(short.token_hash, later, max_attempts=5) is None
    assert await repo.attempt_challenge("unknown", later, max_attempts=5) is None
    assert await repo.purge_challenges(later) == 1
    assert await repo.end_challenge(live.token_hash) is True
    assert await repo.end_challenge(live.token_hash) is False
    assert await repo.attempt_challenge(live.token_hash, later, max_attempts=5) is None
