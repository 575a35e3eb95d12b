"""IdempotencyGuard: a repeated key replays the first answer and runs nothing new."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import uuid4

import pytest

from engage_core import (
    IdempotencyKeyReused,
    RequestInProgress,
    StoredResponse,
    ValidationFailed,
)
from engage_core.services.idempotency import IN_PROGRESS_LEASE

CREATED = StoredResponse(201, b'{"inserted": 1}')


class Action:
    """An idempotent action that counts its runs and answers with a new body each time."""

    def __init__(self):
        self.runs = 0

    async def __call__(self):
        self.runs += 1
        return StoredResponse(201, f'{{"run": {self.runs}}}'.encode())


@pytest.fixture
def action():
    return Action()


@pytest.fixture
async def user_id(new_user_id):
    return await new_user_id()


async def test_the_same_key_and_request_twice_runs_once_and_replays_the_first_response(
    guard, user_id, action
):
    first = await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)
    second = await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)

    assert action.runs == 1
    assert first == StoredResponse(201, b'{"run": 1}')
    assert second == first


async def test_different_keys_each_run(guard, user_id, action):
    await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)
    second = await guard.run(user_id=user_id, key="k-2", request_fingerprint="f", action=action)

    assert action.runs == 2
    assert second == StoredResponse(201, b'{"run": 2}')


async def test_the_same_key_with_another_request_is_refused(guard, user_id, action):
    await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)

    with pytest.raises(IdempotencyKeyReused):
        await guard.run(user_id=user_id, key="k-1", request_fingerprint="other", action=action)

    assert action.runs == 1


async def test_keys_are_per_user(guard, action):
    alice, bob = uuid4(), uuid4()

    for_alice = await guard.run(user_id=alice, key="k-1", request_fingerprint="f", action=action)
    for_bob = await guard.run(user_id=bob, key="k-1", request_fingerprint="f", action=action)

    assert action.runs == 2
    assert for_alice != for_bob


async def test_an_action_that_fails_releases_the_key_so_a_retry_runs(guard, user_id, action):
    async def failing():
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=failing)

    response = await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)

    assert action.runs == 1
    assert response == StoredResponse(201, b'{"run": 1}')


async def test_a_write_cut_off_before_its_answer_is_undone_so_a_retry_stores_it_once(
    guard, user_id, metrics
):
    async def record():
        metric = await metrics.record(user_id, metric_type="views", metric_value=1)
        return StoredResponse(201, str(metric.id).encode())

    async def cut_off_after_the_write():
        await record()
        raise ConnectionError("server closed the connection unexpectedly")

    with pytest.raises(ConnectionError):
        await guard.run(
            user_id=user_id, key="k-1", request_fingerprint="f", action=cut_off_after_the_write
        )
    assert (await metrics.list(user_id)).items == ()

    retry = await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=record)
    replay = await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=record)

    (metric,) = (await metrics.list(user_id)).items
    assert retry == replay == StoredResponse(201, str(metric.id).encode())


async def test_a_failed_action_releases_the_key_for_another_request_too(guard, user_id, action):
    async def invalid():
        raise ValidationFailed.single("metric_value", "must be finite")

    with pytest.raises(ValidationFailed):
        await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=invalid)

    await guard.run(user_id=user_id, key="k-1", request_fingerprint="fixed", action=action)

    assert action.runs == 1


async def test_a_key_is_remembered_for_just_under_24_hours(guard, user_id, action, clock):
    await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)
    clock.advance(timedelta(hours=24) - timedelta(seconds=1))

    replay = await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)

    assert action.runs == 1
    assert replay == StoredResponse(201, b'{"run": 1}')


async def test_a_key_is_free_again_after_24_hours(guard, user_id, action, clock):
    await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)
    clock.advance(timedelta(hours=24, seconds=1))

    fresh = await guard.run(user_id=user_id, key="k-1", request_fingerprint="new", action=action)

    assert action.runs == 2
    assert fresh == StoredResponse(201, b'{"run": 2}')


@pytest.mark.parametrize(
    "key",
    ["", "has space", "k" * 256, "tab\there", "naïve", "line\n"],
    ids=["empty", "space", "256-chars", "tab", "non-ascii", "newline"],
)
async def test_a_malformed_key_is_refused_before_anything_runs(guard, user_id, action, key):
    with pytest.raises(ValidationFailed):
        await guard.run(user_id=user_id, key=key, request_fingerprint="f", action=action)

    assert action.runs == 0


@pytest.mark.parametrize("key", ["k", "k" * 255, "550e8400-e29b-41d4-a716-446655440000", "!~"])
async def test_a_key_of_1_to_255_printable_ascii_characters_is_accepted(
    guard, user_id, action, key
):
    await guard.run(user_id=user_id, key=key, request_fingerprint="f", action=action)

    assert action.runs == 1


async def test_a_repeat_while_the_first_is_still_running_is_refused(guard, user_id):
    started, release = asyncio.Event(), asyncio.Event()
    runs = 0

    async def slow():
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()
        return CREATED

    async def repeat_while_running():
        await started.wait()
        try:
            with pytest.raises(RequestInProgress):
                await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=slow)
        finally:
            release.set()

    first, _ = await asyncio.wait_for(
        asyncio.gather(
            guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=slow),
            repeat_while_running(),
        ),
        timeout=5,
    )

    assert first == CREATED
    assert runs == 1
    assert await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=slow) == (
        CREATED
    )
    assert runs == 1


async def test_a_cancelled_action_releases_the_key(guard, user_id, action):
    started = asyncio.Event()

    async def hanging():
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(
        guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=hanging)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)

    assert action.runs == 1


async def test_another_request_while_the_first_is_running_is_a_reused_key(guard, user_id, action):
    started, release = asyncio.Event(), asyncio.Event()

    async def slow():
        started.set()
        await release.wait()
        return CREATED

    task = asyncio.create_task(
        guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=slow)
    )
    await started.wait()
    try:
        with pytest.raises(IdempotencyKeyReused):
            await guard.run(user_id=user_id, key="k-1", request_fingerprint="g", action=action)
    finally:
        release.set()
    assert await task == CREATED
    assert action.runs == 0


async def test_a_key_held_past_its_lease_no_longer_blocks_a_retry(
    guard, idempotency_store, user_id, action, clock
):
    # The first request's process died holding the key: reserved, never answered
    # nor freed. (One still running in its unit of work is tested over PostgreSQL,
    # tests/integration/test_idempotent_writes.py: the fakes run one unit at a time.)
    lease = IN_PROGRESS_LEASE.total_seconds()
    await idempotency_store.reserve(user_id, "k-1", "f", lease=lease)
    with pytest.raises(RequestInProgress):
        await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)

    clock.advance(IN_PROGRESS_LEASE + timedelta(seconds=1))
    retry = await guard.run(user_id=user_id, key="k-1", request_fingerprint="f", action=action)

    assert retry == StoredResponse(201, b'{"run": 1}')
