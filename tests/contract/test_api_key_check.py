"""Contract of ApiKeyRepository.run_checked: work done behind its key's check, the
use counted in the key's rate limit.

The fake checks and counts first and runs the work only for a key that passes;
PostgreSQL sends the check (``engage_key_check``, which counts) with the work's
first statement. Either way a refused key gets nothing read, keeps nothing
written and is not counted, and the rules are ``ApiKeyService.authenticate``'s.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest

from engage_core.model import ApiKey, ApiKeyScope, MetricDraft
from engage_core.ports import KeyRefused, RateCount
from engage_core.queries import MetricPageQuery
from engage_core.testing import FakeClock

if TYPE_CHECKING:
    from conftest import CheckedKeys

READ, WRITE = ApiKeyScope.METRICS_READ, ApiKeyScope.METRICS_WRITE
WINDOW = 60.0


def _key(user_id: UUID, at: datetime, *, expires_at: datetime | None = None) -> ApiKey:
    key_id = uuid4()
    return ApiKey(
        id=key_id,
        user_id=user_id,
        name="sensor",
        scopes=frozenset({WRITE}),
        secret_hash=hashlib.sha256(key_id.bytes).hexdigest(),
        created_at=at,
        expires_at=expires_at,
    )


def _count(key: ApiKey, limit: int = 5) -> RateCount:
    return RateCount(f"api-key:{key.id}", limit, WINDOW)


async def _used(storage: CheckedKeys, key: ApiKey, limit: int = 5) -> int:
    """How many uses of ``key`` its limit holds."""
    decision = await storage.limits.peek(f"api-key:{key.id}", limit=limit, window=WINDOW)
    return limit - decision.remaining


async def _metrics_of(storage: CheckedKeys, user_id: UUID) -> list[Any]:
    return list(await storage.metrics.page(user_id, MetricPageQuery(limit=100)))


async def _add_metric(storage: CheckedKeys, user_id: UUID, now: datetime) -> Any:
    draft = MetricDraft.parse(metric_type="steps", metric_value="3", recorded_at=None, now=now)
    return await storage.metrics.add(user_id, draft)


async def test_a_usable_key_gets_the_work_s_result_and_its_use_counted(
    checked_keys: CheckedKeys, clock: FakeClock
) -> None:
    storage, now = checked_keys, clock.now()
    user_id = await storage.new_user()
    key = _key(user_id, now, expires_at=now + timedelta(days=1))
    await storage.keys.add(key)

    outcome = await storage.keys.run_checked(
        key.id,
        user_id,
        key.secret_hash,
        WRITE,
        now,
        lambda: _add_metric(storage, user_id, now),
        count=_count(key),
    )

    assert not isinstance(outcome, KeyRefused)
    checked, metric = outcome
    assert checked == key
    assert await _metrics_of(storage, user_id) == [metric]
    assert await _used(storage, key) == 1


async def test_without_a_count_nothing_is_counted(
    checked_keys: CheckedKeys, clock: FakeClock
) -> None:
    storage, now = checked_keys, clock.now()
    user_id = await storage.new_user()
    key = _key(user_id, now)
    await storage.keys.add(key)
    written = await _add_metric(storage, user_id, now)

    outcome = await storage.keys.run_checked(
        key.id, user_id, key.secret_hash, WRITE, now, lambda: _metrics_of(storage, user_id)
    )

    assert outcome == (key, [written])
    assert await _used(storage, key) == 0


async def _refused_case(
    storage: CheckedKeys, case: str, now: datetime
) -> tuple[ApiKey, UUID, str, datetime]:
    """A key, the user and secret's hash the request claims, and the moment, for
    each way a key may not be used."""
    user_id = await storage.new_user()
    key = _key(user_id, now, expires_at=now + timedelta(hours=1))
    await storage.keys.add(key)
    if case == "revoked":
        await storage.keys.revoke(key.id, now)
        return key, user_id, key.secret_hash, now + timedelta(seconds=1)
    if case == "expired":
        assert key.expires_at is not None
        return key, user_id, key.secret_hash, key.expires_at
    if case == "another user's":
        return key, await storage.new_user(), key.secret_hash, now
    if case == "another secret":
        return key, user_id, "0" * 64, now
    assert case == "unknown"
    return _key(user_id, now), user_id, key.secret_hash, now


REASONS = {
    "revoked": "revoked",
    "expired": "expired",
    "another user's": "unknown",
    "another secret": "unknown",
    "unknown": "unknown",
}


@pytest.mark.parametrize("case", list(REASONS))
async def test_a_refused_key_keeps_nothing_and_is_not_counted(
    checked_keys: CheckedKeys, clock: FakeClock, case: str
) -> None:
    storage = checked_keys
    key, user_id, secret_hash, at = await _refused_case(storage, case, clock.now())

    outcome = await storage.keys.run_checked(
        key.id,
        user_id,
        secret_hash,
        WRITE,
        at,
        lambda: _add_metric(storage, key.user_id, at),
        count=_count(key),
    )

    assert outcome == KeyRefused(REASONS[case])  # type: ignore[arg-type]
    assert not await _metrics_of(storage, key.user_id)
    assert await _used(storage, key) == 0


async def test_a_key_without_the_scope_reads_nothing_and_is_not_counted(
    checked_keys: CheckedKeys, clock: FakeClock
) -> None:
    storage, now = checked_keys, clock.now()
    user_id = await storage.new_user()
    key = _key(user_id, now)  # metrics:write only
    await storage.keys.add(key)
    await _add_metric(storage, user_id, now)
    read: list[Any] = []

    async def reading() -> None:
        read.extend(await _metrics_of(storage, user_id))

    outcome = await storage.keys.run_checked(
        key.id, user_id, key.secret_hash, READ, now, reading, count=_count(key)
    )

    assert outcome == KeyRefused("scope")
    assert read == []
    assert await _used(storage, key) == 0


async def test_past_its_rate_a_key_is_refused_with_when_to_retry(
    checked_keys: CheckedKeys, clock: FakeClock
) -> None:
    storage, now = checked_keys, clock.now()
    user_id = await storage.new_user()
    key = _key(user_id, now)
    await storage.keys.add(key)

    for _ in range(3):
        passed = await storage.keys.run_checked(
            key.id,
            user_id,
            key.secret_hash,
            WRITE,
            now,
            lambda: _add_metric(storage, user_id, now),
            count=_count(key, limit=3),
        )
        assert not isinstance(passed, KeyRefused)
    refused = await storage.keys.run_checked(
        key.id,
        user_id,
        key.secret_hash,
        WRITE,
        now,
        lambda: _add_metric(storage, user_id, now),
        count=_count(key, limit=3),
    )

    assert isinstance(refused, KeyRefused)
    assert refused.reason == "rate"
    assert 0 < refused.retry_after <= WINDOW
    assert len(await _metrics_of(storage, user_id)) == 3
    assert await _used(storage, key, limit=3) == 3


async def test_the_work_s_error_is_raised_for_a_usable_key_only_and_its_use_counted(
    checked_keys: CheckedKeys, clock: FakeClock
) -> None:
    storage, now = checked_keys, clock.now()
    user_id = await storage.new_user()
    usable, revoked = _key(user_id, now), _key(user_id, now)
    await storage.keys.add(usable)
    await storage.keys.add(revoked)
    await storage.keys.revoke(revoked.id, now)

    async def failing() -> None:
        await _metrics_of(storage, user_id)
        raise LookupError("the work failed")

    with pytest.raises(LookupError, match="the work failed"):
        await storage.keys.run_checked(
            usable.id, user_id, usable.secret_hash, WRITE, now, failing, count=_count(usable)
        )
    assert await _used(storage, usable) == 1
    assert await storage.keys.run_checked(
        revoked.id, user_id, revoked.secret_hash, WRITE, now, failing, count=_count(revoked)
    ) == KeyRefused("revoked")
    assert await _used(storage, revoked) == 0


async def test_a_statement_that_fails_with_the_check_still_counts_the_use(
    checked_keys: CheckedKeys, clock: FakeClock
) -> None:
    """The work's own statement failing (here: a metric for a user who is not
    there) rolls back what travelled with it; the use counts all the same."""
    storage, now = checked_keys, clock.now()
    user_id = await storage.new_user()
    key = _key(user_id, now)
    await storage.keys.add(key)

    async def failing() -> None:
        await _add_metric(storage, uuid4(), now)  # PostgreSQL: a foreign key violation
        raise LookupError("stored for nobody")  # a store that took it

    with pytest.raises(Exception):  # noqa: B017  # each store's own error
        await storage.keys.run_checked(
            key.id, user_id, key.secret_hash, WRITE, now, failing, count=_count(key)
        )

    assert await _used(storage, key) == 1


@pytest.mark.parametrize(
    ("usable", "offset"),
    [(True, -timedelta(microseconds=1)), (False, timedelta(0)), (False, timedelta(microseconds=1))],
)
async def test_the_check_follows_api_key_is_usable(
    checked_keys: CheckedKeys, clock: FakeClock, usable: bool, offset: timedelta
) -> None:
    storage, now = checked_keys, clock.now()
    user_id = await storage.new_user()
    key = _key(user_id, now, expires_at=now + timedelta(hours=1))
    await storage.keys.add(key)
    assert key.expires_at is not None
    at = key.expires_at + offset
    assert key.is_usable(at) is usable

    outcome = await storage.keys.run_checked(
        key.id, user_id, key.secret_hash, WRITE, at, lambda: _metrics_of(storage, user_id)
    )

    assert (outcome == (key, [])) is usable
    assert (outcome == KeyRefused("expired")) is not usable
