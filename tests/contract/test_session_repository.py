"""Contract of SessionRepository: refresh-token lineages and their ends."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from engage_core.model import Client, Session
from engage_core.ports import SessionRepository
from engage_core.testing import FakeClock

if TYPE_CHECKING:
    from conftest import Subject

LIFETIME = timedelta(days=14)


def _session(
    user_id: UUID,
    at: datetime,
    *,
    family_id: UUID | None = None,
    lifetime: timedelta = LIFETIME,
) -> Session:
    session_id = uuid4()
    return Session(
        id=session_id,
        user_id=user_id,
        family_id=family_id or uuid4(),
        token_hash=f"hash-{session_id.hex}",
        created_at=at,
        expires_at=at + lifetime,
    )


async def _stored(repo: SessionRepository, session_id: UUID) -> Session:
    session = await repo.get(session_id)
    assert session is not None
    return session


async def _live(repo: SessionRepository, sessions: Iterable[Session], at: datetime) -> set[UUID]:
    """Which of ``sessions`` the repository holds as live at ``at``."""
    return {s.id for s in sessions if (await _stored(repo, s.id)).is_live(at)}


async def test_an_added_session_can_be_read_back(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    session = _session(user_id, clock.now())

    await repo.add(session)

    assert await repo.get(session.id) == session
    assert await repo.get(uuid4()) is None


async def test_a_session_is_found_by_its_token_hash(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    one, other = _session(user_id, clock.now()), _session(user_id, clock.now())
    await repo.add(one)
    await repo.add(other)

    assert await repo.find_by_token_hash(one.token_hash) == one
    assert await repo.find_by_token_hash(other.token_hash) == other
    assert await repo.find_by_token_hash("hash-unknown") is None


async def test_rotate_ends_the_old_session_and_adds_the_new_one(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    old = _session(user_id, clock.now())
    await repo.add(old)
    at = clock.now() + timedelta(minutes=10)
    new = _session(user_id, at, family_id=old.family_id)

    assert await repo.rotate(old.id, new, at) is True

    ended = await _stored(repo, old.id)
    assert ended.ended_at == at
    assert ended.end_reason == "rotated"
    assert await repo.get(new.id) == new
    assert await repo.find_by_token_hash(new.token_hash) == new
    assert await _live(repo, [old, new], at) == {new.id}


async def test_a_session_rotates_only_once(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    old = _session(user_id, clock.now())
    await repo.add(old)
    at = clock.now() + timedelta(minutes=10)
    first = _session(user_id, at, family_id=old.family_id)
    second = _session(user_id, at + timedelta(seconds=1), family_id=old.family_id)
    assert await repo.rotate(old.id, first, at) is True

    assert await repo.rotate(old.id, second, at + timedelta(seconds=1)) is False

    assert await repo.get(second.id) is None
    assert await repo.find_by_token_hash(second.token_hash) is None
    assert (await _stored(repo, old.id)).ended_at == at
    assert await _live(repo, [old, first], at + timedelta(seconds=1)) == {first.id}


async def test_an_expired_session_does_not_rotate(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    old = _session(user_id, clock.now(), lifetime=timedelta(hours=1))
    await repo.add(old)
    at = old.expires_at  # expired from this instant on
    new = _session(user_id, at, family_id=old.family_id)

    assert await repo.rotate(old.id, new, at) is False

    assert await repo.get(new.id) is None
    assert await repo.get(old.id) == old


async def test_an_ended_or_unknown_session_does_not_rotate(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    old = _session(user_id, clock.now())
    await repo.add(old)
    await repo.end_family(old.family_id, clock.now(), "logout")
    at = clock.now() + timedelta(minutes=1)

    assert await repo.rotate(old.id, _session(user_id, at), at) is False
    assert await repo.rotate(uuid4(), _session(user_id, at), at) is False

    assert await repo.live_devices(user_id, at) == []
    assert (await _stored(repo, old.id)).end_reason == "logout"


async def test_end_family_ends_its_live_members_and_returns_their_ids(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    now = clock.now()
    family = uuid4()
    live = [_session(user_id, now, family_id=family) for _ in range(3)]
    already_ended = _session(user_id, now, family_id=family)
    expired = _session(user_id, now - LIFETIME - timedelta(hours=1), family_id=family)
    other_family = _session(user_id, now)
    for session in [already_ended, *live[1:], expired, other_family]:
        await repo.add(session)
    assert await repo.rotate(already_ended.id, live[0], now)
    at = now + timedelta(minutes=1)

    ended = await repo.end_family(family, at, "reuse_detected")

    assert sorted(ended) == sorted(s.id for s in live)
    for session in live:
        stored = await _stored(repo, session.id)
        assert (stored.ended_at, stored.end_reason) == (at, "reuse_detected")
    assert (await _stored(repo, already_ended.id)).end_reason == "rotated"
    assert (await _stored(repo, expired.id)).ended_at is None
    assert [d.id for d in await repo.live_devices(user_id, at)] == [other_family.family_id]
    assert await repo.end_family(family, at, "reuse_detected") == []


async def test_end_all_for_user_ends_every_live_session_of_that_user(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo = session_repository.impl
    alice, bob = await session_repository.new_user(), await session_repository.new_user()
    now = clock.now()
    alices = [_session(alice, now) for _ in range(3)]
    bobs = _session(bob, now)
    for session in [*alices, bobs]:
        await repo.add(session)
    at = now + timedelta(minutes=1)

    ended = await repo.end_all_for_user(alice, at, "account_deleted")

    assert sorted(ended) == sorted(s.id for s in alices)
    assert await repo.live_devices(alice, at) == []
    assert await _live(repo, [bobs], at) == {bobs.id}
    assert await repo.end_all_for_user(alice, at, "account_deleted") == []


async def test_end_all_for_user_can_keep_one_family(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    now = clock.now()
    kept_family = uuid4()
    kept = [_session(user_id, now, family_id=kept_family) for _ in range(2)]
    others = [_session(user_id, now) for _ in range(2)]
    for session in [*kept, *others]:
        await repo.add(session)
    at = now + timedelta(minutes=1)

    ended = await repo.end_all_for_user(user_id, at, "password_changed", keep_family=kept_family)

    assert sorted(ended) == sorted(s.id for s in others)
    assert await _live(repo, [*kept, *others], at) == {s.id for s in kept}
    for session in others:
        stored = await _stored(repo, session.id)
        assert (stored.ended_at, stored.end_reason) == (at, "password_changed")


async def test_a_session_keeps_its_client_and_last_seen_time(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    session = _session(user_id, clock.now())
    session.client = Client(ip="203.0.113.9", user_agent="Firefox")
    session.last_seen_at = clock.now()
    await repo.add(session)

    stored = await _stored(repo, session.id)

    assert stored.client == Client(ip="203.0.113.9", user_agent="Firefox")
    assert stored.last_seen_at == clock.now()


async def test_touch_writes_last_seen_only_when_it_is_old_enough(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    session = _session(user_id, clock.now())
    session.last_seen_at = clock.now()
    await repo.add(session)
    soon, later = clock.now() + timedelta(seconds=30), clock.now() + timedelta(seconds=90)

    await repo.touch(session.id, soon, unless_after=soon - timedelta(minutes=1))
    assert (await _stored(repo, session.id)).last_seen_at == clock.now()

    await repo.touch(session.id, later, unless_after=later - timedelta(minutes=1))
    assert (await _stored(repo, session.id)).last_seen_at == later


async def test_live_devices_name_families_from_their_first_sign_in(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    other = await session_repository.new_user()
    start = clock.now()
    first = _session(user_id, start)
    first.client = Client(ip="192.0.2.1", user_agent="Phone")
    await repo.add(first)
    later = start + timedelta(hours=1)
    rotated = _session(user_id, later, family_id=first.family_id)
    rotated.client, rotated.last_seen_at = Client(ip="192.0.2.2", user_agent="Phone"), later
    assert await repo.rotate(first.id, rotated, later)
    laptop = _session(user_id, start + timedelta(minutes=5))
    await repo.add(laptop)
    ended = _session(user_id, start)
    await repo.add(ended)
    await repo.end_family(ended.family_id, start, "logged out")
    await repo.add(_session(other, start))

    devices = await repo.live_devices(user_id, later)

    assert [d.id for d in devices] == [laptop.family_id, first.family_id]
    phone = devices[1]
    assert (phone.signed_in_at, phone.last_seen_at) == (start, later)
    assert phone.client == Client(ip="192.0.2.2", user_agent="Phone")
    assert devices[0].last_seen_at == laptop.created_at


async def test_has_sessions_remembers_ended_ones_and_their_user_agents(
    session_repository: Subject[SessionRepository], clock: FakeClock
) -> None:
    repo, user_id = session_repository.impl, await session_repository.new_user()
    assert await repo.has_sessions(user_id) is False
    session = _session(user_id, clock.now())
    session.client = Client(ip="192.0.2.1", user_agent="Phone")
    await repo.add(session)
    await repo.end_family(session.family_id, clock.now(), "logged out")

    assert await repo.has_sessions(user_id) is True
    assert await repo.has_sessions_from(user_id, "Phone") is True
    assert await repo.has_sessions_from(user_id, "Laptop") is False
    assert await repo.has_sessions_from(user_id, None) is False

    anonymous = _session(user_id, clock.now())
    anonymous.client = Client(ip="192.0.2.1", user_agent=None)
    await repo.add(anonymous)
    assert await repo.has_sessions_from(user_id, None) is True
