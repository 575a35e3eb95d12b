"""Contract of UserRepository."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import uuid4

import pytest

from engage_core.errors import Conflict
from engage_core.model import Email, User
from engage_core.ports import UserRepository
from engage_core.testing import FakeClock


def _user(clock: FakeClock, email: str) -> User:
    return User(
        id=uuid4(),
        email=Email(email),
        password_hash=f"hash-of-{email}",
        created_at=clock.now(),
        updated_at=clock.now(),
    )


async def test_an_added_user_can_be_read_back_by_id(
    user_repository: UserRepository, clock: FakeClock
) -> None:
    user = _user(clock, "Alice@Example.com")

    await user_repository.add(user)

    assert await user_repository.get(user.id) == user


async def test_an_unknown_user_reads_as_none(user_repository: UserRepository) -> None:
    assert await user_repository.get(uuid4()) is None
    assert await user_repository.get_by_email("nobody@example.com") is None


@pytest.mark.parametrize("lookup", ["alice@example.com", "Alice@Example.com", "ALICE@EXAMPLE.COM"])
async def test_a_user_is_found_by_email_in_any_case(
    user_repository: UserRepository, clock: FakeClock, lookup: str
) -> None:
    user = _user(clock, "Alice@Example.com")
    await user_repository.add(user)

    found = await user_repository.get_by_email(lookup)

    assert found == user
    assert found is not None
    assert found.email.value == "Alice@example.com"  # as given, domain lower-cased


async def test_an_email_taken_in_another_case_is_a_conflict(
    user_repository: UserRepository, clock: FakeClock
) -> None:
    first = _user(clock, "alice@example.com")
    await user_repository.add(first)

    with pytest.raises(Conflict):
        await user_repository.add(_user(clock, "ALICE@example.COM"))

    assert await user_repository.get_by_email("alice@example.com") == first


async def test_a_returned_user_is_a_copy(user_repository: UserRepository, clock: FakeClock) -> None:
    user = _user(clock, "alice@example.com")
    await user_repository.add(user)

    user.password_hash = "changed-outside"
    read = await user_repository.get(user.id)
    assert read is not None
    read.password_hash = "changed-again"

    stored = await user_repository.get(user.id)
    assert stored is not None
    assert stored.password_hash == "hash-of-alice@example.com"


async def test_set_password_hash_replacing_stores_only_over_that_hash(
    user_repository: UserRepository, clock: FakeClock
) -> None:
    user = _user(clock, "alice@example.com")
    await user_repository.add(user)

    assert await user_repository.set_password_hash(
        user.id, "first", clock.now(), replacing=user.password_hash
    )
    # A second change from the same old hash: the hash is no longer that one.
    assert not await user_repository.set_password_hash(
        user.id, "second", clock.now(), replacing=user.password_hash
    )
    assert not await user_repository.set_password_hash(uuid4(), "x", clock.now())

    stored = await user_repository.get(user.id)
    assert stored is not None
    assert stored.password_hash == "first"


async def test_set_password_hash_updates_the_hash_and_updated_at(
    user_repository: UserRepository, clock: FakeClock
) -> None:
    user = _user(clock, "alice@example.com")
    await user_repository.add(user)
    later = clock.now() + timedelta(hours=1)

    await user_repository.set_password_hash(user.id, "new-hash", later)

    stored = await user_repository.get(user.id)
    assert stored is not None
    assert stored.password_hash == "new-hash"
    assert stored.updated_at == later
    assert stored.created_at == user.created_at
    by_email = await user_repository.get_by_email("alice@example.com")
    assert by_email is not None
    assert by_email.password_hash == "new-hash"


async def test_delete_reports_whether_there_was_a_user(
    user_repository: UserRepository, clock: FakeClock
) -> None:
    user = _user(clock, "alice@example.com")
    await user_repository.add(user)

    assert await user_repository.delete(user.id) is True
    assert await user_repository.delete(user.id) is False
    assert await user_repository.get(user.id) is None
    assert await user_repository.get_by_email("alice@example.com") is None


async def test_a_deleted_users_email_can_be_taken_again(
    user_repository: UserRepository, clock: FakeClock
) -> None:
    first = _user(clock, "alice@example.com")
    await user_repository.add(first)
    await user_repository.delete(first.id)

    second = _user(clock, "Alice@example.com")
    await user_repository.add(second)

    assert await user_repository.get_by_email("alice@example.com") == second


async def test_list_orders_by_canonical_email_and_pages_after_an_email(
    user_repository: UserRepository, clock: FakeClock
) -> None:
    for email in ["dave@example.com", "Bob@example.com", "alice@example.com", "Carol@example.com"]:
        await user_repository.add(_user(clock, email))

    def emails(users: Sequence[User]) -> list[str]:
        return [u.email.canonical for u in users]

    assert emails(await user_repository.list()) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    ]
    assert emails(await user_repository.list(limit=2)) == ["alice@example.com", "bob@example.com"]
    assert emails(await user_repository.list(after_email="bob@example.com", limit=1)) == [
        "carol@example.com"
    ]
    assert emails(await user_repository.list(after_email="bob@example.com")) == [
        "carol@example.com",
        "dave@example.com",
    ]
    assert emails(await user_repository.list(after_email="b")) == [
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    ]
    assert emails(await user_repository.list(after_email="dave@example.com")) == []


async def test_list_pages_cover_every_user_once(
    user_repository: UserRepository, clock: FakeClock
) -> None:
    added = sorted(f"user{n:02}@example.com" for n in range(7))
    for email in added:
        await user_repository.add(_user(clock, email))

    seen: list[str] = []
    after: str | None = None
    while page := await user_repository.list(after_email=after, limit=3):
        assert len(page) <= 3
        seen += [u.email.canonical for u in page]
        after = page[-1].email.canonical

    assert seen == added


async def test_a_password_is_held_only_while_it_is_the_users(
    user_repository: UserRepository, clock: FakeClock
) -> None:
    user = _user(clock, "held@example.com")
    await user_repository.add(user)
    assert await user_repository.hold_password(user.id, user.password_hash)
    await user_repository.set_password_hash(user.id, "another-hash", clock.now())
    assert not await user_repository.hold_password(user.id, user.password_hash)
    assert await user_repository.hold_password(user.id, "another-hash")
    assert not await user_repository.hold_password(uuid4(), "another-hash")
