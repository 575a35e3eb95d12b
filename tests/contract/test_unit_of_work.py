"""Contract of UnitOfWork: the steps of a block commit together or not at all."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest

from engage_core.errors import Conflict
from engage_core.model import Email, Session, User
from engage_core.testing import FakeClock

if TYPE_CHECKING:
    from conftest import Transactional


class Boom(Exception):
    """A step that fails after others have written."""


def _user(clock: FakeClock, email: str) -> User:
    return User(
        id=uuid4(),
        email=Email(email),
        password_hash="old-hash",
        created_at=clock.now(),
        updated_at=clock.now(),
    )


def _session(clock: FakeClock, user_id: UUID) -> Session:
    return Session(
        id=uuid4(),
        user_id=user_id,
        family_id=uuid4(),
        token_hash=uuid4().hex,
        created_at=clock.now(),
        expires_at=clock.now() + timedelta(days=1),
    )


async def _added(store: Transactional, clock: FakeClock, email: str) -> User:
    user = _user(clock, email)
    await store.users.add(user)
    return user


async def _hash_of(store: Transactional, user_id: UUID) -> str | None:
    user = await store.users.get(user_id)
    return user.password_hash if user else None


async def _fail_in_a_block(store: Transactional) -> None:
    async with store.uow.atomic():
        raise Boom


async def test_the_steps_of_a_block_commit_together(
    transactional: Transactional, clock: FakeClock
) -> None:
    store = transactional
    alice = _user(clock, "alice@example.com")
    session = _session(clock, alice.id)

    async with store.uow.atomic():
        await store.users.add(alice)
        await store.sessions.add(session)
        await store.users.set_password_hash(alice.id, "new-hash", clock.now())

    assert await _hash_of(store, alice.id) == "new-hash"
    assert await store.sessions.get(session.id) == session


async def test_a_failing_second_step_leaves_nothing_of_the_first(
    transactional: Transactional, clock: FakeClock
) -> None:
    store = transactional
    alice = await _added(store, clock, "alice@example.com")
    await _added(store, clock, "bob@example.com")

    async def change_then_take_bobs_email() -> None:
        async with store.uow.atomic():
            await store.users.set_password_hash(alice.id, "new-hash", clock.now())
            await store.users.add(_user(clock, "BOB@example.com"))  # taken: the step fails

    with pytest.raises(Conflict):
        await change_then_take_bobs_email()

    assert await _hash_of(store, alice.id) == "old-hash"


async def test_an_error_in_a_block_undoes_every_write_in_it(
    transactional: Transactional, clock: FakeClock
) -> None:
    store = transactional
    alice = await _added(store, clock, "alice@example.com")
    live = _session(clock, alice.id)
    await store.sessions.add(live)
    carol = _user(clock, "carol@example.com")

    async def write_then_fail() -> None:
        async with store.uow.atomic():
            await store.sessions.end_all_for_user(alice.id, clock.now(), "password changed")
            await store.users.add(carol)
            await store.users.delete(alice.id)
            raise Boom

    with pytest.raises(Boom):
        await write_then_fail()

    assert await store.users.get(carol.id) is None
    kept = await store.sessions.get(live.id)
    assert kept is not None
    assert kept.is_live(clock.now())
    assert await _hash_of(store, alice.id) == "old-hash"


async def test_writes_outside_a_block_commit_at_once(
    transactional: Transactional, clock: FakeClock
) -> None:
    store = transactional
    alice = await _added(store, clock, "alice@example.com")
    await store.users.set_password_hash(alice.id, "new-hash", clock.now())

    with pytest.raises(Boom):
        await _fail_in_a_block(store)

    assert await _hash_of(store, alice.id) == "new-hash"


async def test_a_nested_block_joins_the_outer_one(
    transactional: Transactional, clock: FakeClock
) -> None:
    store = transactional
    alice = await _added(store, clock, "alice@example.com")

    async def fail_after_the_inner_block() -> None:
        async with store.uow.atomic():
            async with store.uow.atomic():
                await store.users.set_password_hash(alice.id, "new-hash", clock.now())
            raise Boom  # after the inner block ended: its write goes too

    with pytest.raises(Boom):
        await fail_after_the_inner_block()

    assert await _hash_of(store, alice.id) == "old-hash"


async def test_a_failed_nested_block_undoes_only_itself(
    transactional: Transactional, clock: FakeClock
) -> None:
    store = transactional
    alice = await _added(store, clock, "alice@example.com")
    carol = _user(clock, "carol@example.com")

    async def add_carol_then_fail() -> None:
        async with store.uow.atomic():
            await store.users.add(carol)
            raise Boom

    async with store.uow.atomic():
        await store.users.set_password_hash(alice.id, "new-hash", clock.now())
        with pytest.raises(Boom):
            await add_carol_then_fail()
        await store.users.add(_user(clock, "dave@example.com"))

    assert await _hash_of(store, alice.id) == "new-hash"
    assert await store.users.get(carol.id) is None
    assert await store.users.get_by_email("dave@example.com") is not None


async def test_after_commit_runs_once_the_outermost_block_committed(
    transactional: Transactional, clock: FakeClock
) -> None:
    store = transactional
    alice = await _added(store, clock, "alice@example.com")
    seen: list[str | None] = []

    async def read_hash() -> None:
        seen.append(await _hash_of(store, alice.id))

    async with store.uow.atomic():
        async with store.uow.atomic():
            await store.users.set_password_hash(alice.id, "new-hash", clock.now())
            await store.uow.after_commit(read_hash)
        assert seen == []

    assert seen == ["new-hash"]


async def test_after_commit_never_runs_for_a_block_that_rolled_back(
    transactional: Transactional, clock: FakeClock
) -> None:
    store = transactional
    ran: list[str] = []

    async def record(name: str) -> None:
        ran.append(name)

    async def record_then_fail(name: str) -> None:
        async with store.uow.atomic():
            await store.uow.after_commit(lambda: record(name))
            raise Boom

    with pytest.raises(Boom):
        await record_then_fail("rolled back")
    async with store.uow.atomic():
        with pytest.raises(Boom):
            await record_then_fail("failed inner block")
        await store.uow.after_commit(lambda: record("committed"))

    assert ran == ["committed"]


async def test_after_commit_outside_a_block_runs_at_once(transactional: Transactional) -> None:
    ran: list[str] = []

    async def record() -> None:
        ran.append("now")

    await transactional.uow.after_commit(record)

    assert ran == ["now"]


async def test_a_rollback_leaves_a_concurrent_unit_alone(
    transactional: Transactional, clock: FakeClock
) -> None:
    store = transactional
    alice = await _added(store, clock, "alice@example.com")
    bob = await _added(store, clock, "bob@example.com")
    alice_wrote = asyncio.Event()

    async def failing() -> None:
        async with store.uow.atomic():
            await store.users.set_password_hash(alice.id, "alice-new", clock.now())
            alice_wrote.set()
            await asyncio.sleep(0)
            raise Boom

    async def committing() -> None:
        await alice_wrote.wait()
        async with store.uow.atomic():
            await store.users.set_password_hash(bob.id, "bob-new", clock.now())

    outcomes = await asyncio.gather(failing(), committing(), return_exceptions=True)

    assert isinstance(outcomes[0], Boom)
    assert outcomes[1] is None
    assert await _hash_of(store, alice.id) == "old-hash"
    assert await _hash_of(store, bob.id) == "bob-new"
