"""IdempotencyGuard when its store's database goes away in the middle of a request:
no key is left taken, no change is kept without its answer, and the request's own
outcome stands."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID, uuid4

import pytest

from engage_core import Reservation, StoredResponse, testing
from engage_core.services.idempotency import IdempotencyGuard
from engage_core.services.metrics import MetricsService


class DatabaseGone(Exception):
    """What a store raises while its database is unreachable."""


class SwitchedStore:
    """The in-memory store behind a switch: while ``down``, every call fails."""

    def __init__(self, store: testing.InMemoryIdempotencyStore) -> None:
        self.store = store
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise DatabaseGone("connection refused")

    async def reserve(
        self, owner: UUID, key: str, fingerprint: str, *, lease: float
    ) -> Reservation:
        self._check()
        return await self.store.reserve(owner, key, fingerprint, lease=lease)

    async def complete(
        self, owner: UUID, key: str, response: StoredResponse, *, ttl: float
    ) -> None:
        self._check()
        await self.store.complete(owner, key, response, ttl=ttl)

    async def release(self, owner: UUID, key: str) -> None:
        self._check()
        await self.store.release(owner, key)


@pytest.fixture
def store(idempotency_store: testing.InMemoryIdempotencyStore) -> SwitchedStore:
    return SwitchedStore(idempotency_store)


@pytest.fixture
def guard(store: SwitchedStore, unit_of_work: testing.InMemoryUnitOfWork) -> IdempotencyGuard:
    return IdempotencyGuard(store, unit_of_work, retry_delays=(0.0, 0.0, 0.0))


async def test_a_key_the_outage_kept_from_being_released_is_freed_once_the_store_is_back(
    guard: IdempotencyGuard, store: SwitchedStore
) -> None:
    owner = uuid4()

    async def cut_off() -> StoredResponse:
        store.down = True  # the database goes away while the request runs
        raise DatabaseGone("server closed the connection unexpectedly")

    with pytest.raises(DatabaseGone, match="server closed"):  # the request's own error
        await guard.run(user_id=owner, key="k-1", request_fingerprint="f", action=cut_off)
    store.down = False
    await guard.settled()

    async def record() -> StoredResponse:
        return StoredResponse(201, b'{"id": 1}')

    retried = await guard.run(user_id=owner, key="k-1", request_fingerprint="f", action=record)
    assert retried == StoredResponse(201, b'{"id": 1}')


async def test_a_write_whose_answer_the_outage_kept_from_being_recorded_is_undone(
    guard: IdempotencyGuard,
    store: SwitchedStore,
    metrics: MetricsService,
    new_user_id: Callable[[], Awaitable[UUID]],
) -> None:
    owner = await new_user_id()

    async def record() -> StoredResponse:
        metric = await metrics.record(owner, metric_type="views", metric_value=1)
        return StoredResponse(201, str(metric.id).encode())

    async def cut_off() -> StoredResponse:
        response = await record()
        store.down = True  # the write is made; then the database goes away
        return response

    with pytest.raises(DatabaseGone):  # not a 201: its answer could not be kept
        await guard.run(user_id=owner, key="k-1", request_fingerprint="f", action=cut_off)
    assert (await metrics.list(owner)).items == ()
    store.down = False
    await guard.settled()

    first = await guard.run(user_id=owner, key="k-1", request_fingerprint="f", action=record)
    replay = await guard.run(user_id=owner, key="k-1", request_fingerprint="f", action=record)

    assert replay == first
    assert len((await metrics.list(owner)).items) == 1


async def test_a_store_that_stays_down_is_given_up_on(
    guard: IdempotencyGuard, store: SwitchedStore
) -> None:
    async def cut_off() -> StoredResponse:
        store.down = True
        raise DatabaseGone("server closed the connection unexpectedly")

    with pytest.raises(DatabaseGone):
        await guard.run(user_id=uuid4(), key="k-1", request_fingerprint="f", action=cut_off)

    await guard.settled()  # returns: the retries end (the key's lease frees it later)
