"""Contract of IdempotencyStore: reserve, complete or release, expire; per owner."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

import attrs
import pytest

from engage_core.ports import IdempotencyStore, Reservation, StoredResponse

if TYPE_CHECKING:
    from conftest import Subject

# Short, because a real store's time can only be advanced by sleeping.
SHORT = 0.3
LONG = 60.0
RESPONSE = StoredResponse(201, b'{"id": 1}')


@attrs.frozen
class Keys:
    """The store, and an owner whose keys the test uses."""

    store: IdempotencyStore
    owner: UUID

    async def reserve(self, key: str, fingerprint: str, *, lease: float = LONG) -> Reservation:
        return await self.store.reserve(self.owner, key, fingerprint, lease=lease)

    async def complete(self, key: str, response: StoredResponse, *, ttl: float = LONG) -> None:
        await self.store.complete(self.owner, key, response, ttl=ttl)

    async def release(self, key: str) -> None:
        await self.store.release(self.owner, key)


@pytest.fixture
async def keys(idempotency_store: Subject[IdempotencyStore]) -> Keys:
    return Keys(idempotency_store.impl, await idempotency_store.new_user())


async def test_the_first_reserve_of_a_key_is_first(keys: Keys) -> None:
    assert await keys.reserve("key", "fp-1") == Reservation(first=True)


async def test_a_second_reserve_reports_the_request_in_progress(keys: Keys) -> None:
    await keys.reserve("key", "fp-1")

    again = await keys.reserve("key", "fp-2")

    assert again == Reservation(first=False, fingerprint="fp-1", response=None)


async def test_after_complete_a_reserve_returns_the_response(keys: Keys) -> None:
    await keys.reserve("key", "fp-1")

    await keys.complete("key", RESPONSE)

    done = Reservation(first=False, fingerprint="fp-1", response=RESPONSE)
    assert await keys.reserve("key", "fp-1") == done
    assert await keys.reserve("key", "fp-other") == done


async def test_release_frees_an_uncompleted_reservation(keys: Keys) -> None:
    await keys.reserve("key", "fp-1")

    await keys.release("key")

    assert (await keys.reserve("key", "fp-2")).first is True
    assert (await keys.reserve("key", "fp-3")).fingerprint == "fp-2"


async def test_release_keeps_a_completed_reservation(keys: Keys) -> None:
    await keys.reserve("key", "fp-1")
    await keys.complete("key", RESPONSE)

    await keys.release("key")

    assert await keys.reserve("key", "fp-1") == Reservation(
        first=False, fingerprint="fp-1", response=RESPONSE
    )


async def test_release_of_an_unknown_key_does_nothing(keys: Keys) -> None:
    await keys.release("never-reserved")

    assert (await keys.reserve("never-reserved", "fp")).first is True


async def test_a_lease_that_ran_out_frees_the_key(
    idempotency_store: Subject[IdempotencyStore], keys: Keys
) -> None:
    await keys.reserve("key", "fp-1", lease=SHORT)

    await idempotency_store.advance(SHORT * 2)

    assert (await keys.reserve("key", "fp-2")).first is True
    assert (await keys.reserve("key", "fp-3")).fingerprint == "fp-2"


async def test_a_completed_response_is_forgotten_after_its_ttl(
    idempotency_store: Subject[IdempotencyStore], keys: Keys
) -> None:
    await keys.reserve("key", "fp-1")
    await keys.complete("key", RESPONSE, ttl=SHORT)

    await idempotency_store.advance(SHORT * 2)

    assert (await keys.reserve("key", "fp-2")).first is True


async def test_a_completed_response_outlives_the_lease(
    idempotency_store: Subject[IdempotencyStore], keys: Keys
) -> None:
    await keys.reserve("key", "fp-1", lease=SHORT)
    await keys.complete("key", RESPONSE, ttl=LONG)

    await idempotency_store.advance(SHORT * 2)

    assert await keys.reserve("key", "fp-1") == Reservation(
        first=False, fingerprint="fp-1", response=RESPONSE
    )


async def test_keys_are_independent(keys: Keys) -> None:
    await keys.reserve("a", "fp-a")
    await keys.complete("a", RESPONSE)

    assert (await keys.reserve("b", "fp-b")).first is True
    await keys.release("b")

    assert (await keys.reserve("a", "fp-a")).response == RESPONSE
    assert (await keys.reserve("b", "fp-b2")).first is True


async def test_owners_are_independent(
    idempotency_store: Subject[IdempotencyStore], keys: Keys
) -> None:
    other = Keys(keys.store, await idempotency_store.new_user())
    await keys.reserve("key", "fp-mine")
    await keys.complete("key", RESPONSE)

    assert await other.reserve("key", "fp-theirs") == Reservation(first=True)
    await other.release("key")

    assert (await keys.reserve("key", "fp-mine")).response == RESPONSE
    assert (await other.reserve("key", "fp-again")).first is True
