"""A keyed metric write and the answer its key replays commit together, as the
composition root wires them: a fault between the two leaves neither, a commit
whose reply is lost leaves both, and either way a retry with the key stores
the metric exactly once. Over PostgreSQL and over the fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID

import attrs
import psycopg
import pytest

from engage_adapters.bootstrap import Services
from engage_adapters.postgres.transaction import connection
from engage_core.errors import RequestInProgress
from engage_core.ports import StoredResponse, UnitOfWork
from engage_core.services.idempotency import IdempotencyGuard, fingerprint
from engage_core.services.metrics import MetricsService
from support.faults import StepFailed

KEY = "retry-me"
REQUEST = fingerprint("POST", "/api/dashboard/metrics", b'{"metric_type": "views"}')


@pytest.fixture
async def owner(services: Services) -> UUID:
    user = await services.auth.sign_up(email="ada@example.com", password="ada-password-1")
    return user.id


def recording(metrics: MetricsService, owner: UUID) -> Callable[[], Awaitable[StoredResponse]]:
    """What POST /api/dashboard/metrics runs: store one metric, answer with its id."""

    async def record() -> StoredResponse:
        metric = await metrics.record(owner, metric_type="views", metric_value=1)
        return StoredResponse(201, str(metric.id).encode())

    return record


async def stored(services: Services, owner: UUID) -> int:
    return len((await services.metrics.list(owner)).items)


class CutAfterTheInsert:
    """Metrics whose ``add`` loses its connection right after the insert: in
    PostgreSQL the server ends the backend of the unit's connection (the next
    statement on it fails); over the fakes the step fails outright."""

    def __init__(self, inner: Any, pg_url: str | None) -> None:
        self._inner = inner
        self._pg_url = pg_url

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def add(self, *args: Any, **kwargs: Any) -> Any:
        metric = await self._inner.add(*args, **kwargs)
        if self._pg_url is None:
            raise StepFailed("connection lost after the insert")
        async with connection(self._inner._pool) as conn:
            backend = conn.info.backend_pid
        async with await psycopg.AsyncConnection.connect(self._pg_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", [backend])
        return metric


@attrs.define
class ReplyLost:
    """A unit of work whose commit goes through but whose caller hears of a lost
    connection instead, as when the server's reply to COMMIT never arrives."""

    inner: UnitOfWork

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        async with self.inner.atomic():
            yield
        raise StepFailed("connection lost before the commit's reply")

    async def after_commit(self, action: Callable[[], Awaitable[object]]) -> None:
        await self.inner.after_commit(action)


async def test_a_write_cut_off_before_its_answer_is_undone_and_a_retry_stores_it_once(
    services: Services, owner: UUID, database_url: str | None
) -> None:
    metrics = services.metrics
    cut = attrs.evolve(metrics, metrics=CutAfterTheInsert(metrics.metrics, database_url))

    with pytest.raises((psycopg.OperationalError, StepFailed)):
        await services.idempotency.run(
            user_id=owner, key=KEY, request_fingerprint=REQUEST, action=recording(cut, owner)
        )
    assert await stored(services, owner) == 0  # the insert went with its answer

    retry = await services.idempotency.run(
        user_id=owner, key=KEY, request_fingerprint=REQUEST, action=recording(metrics, owner)
    )
    again = await services.idempotency.run(
        user_id=owner, key=KEY, request_fingerprint=REQUEST, action=recording(metrics, owner)
    )

    assert await stored(services, owner) == 1
    assert again == retry


async def test_a_commit_whose_reply_is_lost_is_replayed_by_a_retry_not_made_again(
    services: Services, owner: UUID
) -> None:
    guard = services.idempotency
    lossy = attrs.evolve(guard, uow=ReplyLost(guard.uow))
    record = recording(services.metrics, owner)

    with pytest.raises(StepFailed):
        await lossy.run(user_id=owner, key=KEY, request_fingerprint=REQUEST, action=record)
    await lossy.settled()
    assert await stored(services, owner) == 1  # committed, answer and all

    retry = await guard.run(user_id=owner, key=KEY, request_fingerprint=REQUEST, action=record)

    assert await stored(services, owner) == 1
    assert retry.status == 201
    (metric,) = (await services.metrics.list(owner)).items
    assert retry.body == str(metric.id).encode()  # the first write's answer


async def test_a_keyed_batch_cut_off_before_its_answer_is_undone(
    services: Services, owner: UUID, database_url: str | None
) -> None:
    metrics = services.metrics
    cut = attrs.evolve(metrics, metrics=CutAfterTheInsert(metrics.metrics, database_url))
    items = [{"metric_type": "views", "metric_value": n} for n in range(3)]

    async def record_batch(service: MetricsService) -> StoredResponse:
        inserted = await service.record_batch(owner, items)
        return StoredResponse(201, str(inserted).encode())

    async def cut_batch() -> StoredResponse:
        # The batch goes in whole; the cut comes with a single insert after it.
        response = await record_batch(metrics)
        await cut.record(owner, metric_type="views", metric_value=9)
        return response

    with pytest.raises((psycopg.OperationalError, StepFailed)):
        await services.idempotency.run(
            user_id=owner, key=KEY, request_fingerprint=REQUEST, action=cut_batch
        )
    assert await stored(services, owner) == 0

    await services.idempotency.run(
        user_id=owner, key=KEY, request_fingerprint=REQUEST, action=lambda: record_batch(metrics)
    )
    assert await stored(services, owner) == 3


@pytest.mark.parametrize("storage", ["postgres"])
async def test_a_repeat_while_the_first_is_writing_is_refused_at_once_not_made_to_wait(
    services: Services, owner: UUID
) -> None:
    wrote, finish = asyncio.Event(), asyncio.Event()
    record = recording(services.metrics, owner)

    async def slow() -> StoredResponse:
        response = await record()
        wrote.set()  # inside the unit, its insert not yet committed
        await finish.wait()
        return response

    first = asyncio.create_task(
        services.idempotency.run(user_id=owner, key=KEY, request_fingerprint=REQUEST, action=slow)
    )
    await wrote.wait()
    try:
        async with asyncio.timeout(5):  # the reservation is committed; nothing holds a lock on it
            with pytest.raises(RequestInProgress):
                await services.idempotency.run(
                    user_id=owner, key=KEY, request_fingerprint=REQUEST, action=record
                )
    finally:
        finish.set()
    answer = await first

    replay = await services.idempotency.run(
        user_id=owner, key=KEY, request_fingerprint=REQUEST, action=record
    )
    assert replay == answer
    assert await stored(services, owner) == 1


@pytest.mark.parametrize("storage", ["postgres"])
async def test_a_request_running_past_its_lease_no_longer_blocks_a_retry(
    services: Services, owner: UUID
) -> None:
    # A lease of nothing: the first request is past it as soon as it holds the key.
    guard: IdempotencyGuard = attrs.evolve(services.idempotency, lease=timedelta(0))
    started, release = asyncio.Event(), asyncio.Event()
    record = recording(services.metrics, owner)

    async def stuck() -> StoredResponse:
        started.set()
        await release.wait()
        return await record()

    first = asyncio.create_task(
        guard.run(user_id=owner, key=KEY, request_fingerprint=REQUEST, action=stuck)
    )
    await started.wait()
    try:
        retry = await guard.run(user_id=owner, key=KEY, request_fingerprint=REQUEST, action=record)
    finally:
        release.set()
        await first

    assert retry.status == 201
    assert await stored(services, owner) == 2  # the stuck one ran too: its lease had ended
