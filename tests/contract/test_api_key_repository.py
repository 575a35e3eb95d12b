"""Contract of ApiKeyRepository: a user's keys, every key, revocation and last use."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import attrs

from engage_core.model import ApiKey, ApiKeyScope
from engage_core.ports import LAST_USED_RESOLUTION, ApiKeyRepository
from engage_core.testing import FakeClock

if TYPE_CHECKING:
    from conftest import Subject


def email_of(user_id: UUID) -> str:
    return f"{user_id.hex}@example.com"  # as the contract's new_user makes them


def _key(
    user_id: UUID,
    created_at: datetime,
    *,
    expires_at: datetime | None = None,
    name: str = "laptop",
    scopes: frozenset[ApiKeyScope] = frozenset({ApiKeyScope.METRICS_READ}),
) -> ApiKey:
    key_id = uuid4()
    return ApiKey(
        id=key_id,
        user_id=user_id,
        name=name,
        scopes=scopes,
        secret_hash=hashlib.sha256(key_id.bytes).hexdigest(),  # 64 hex digits, as an HMAC
        created_at=created_at,
        expires_at=expires_at,
    )


async def _stored(repo: ApiKeyRepository, key_id: UUID) -> ApiKey:
    key = await repo.get(key_id)
    assert key is not None
    return key


async def test_an_added_key_can_be_read_back(
    api_key_repository: Subject[ApiKeyRepository], clock: FakeClock
) -> None:
    repo, user_id = api_key_repository.impl, await api_key_repository.new_user()
    key = _key(
        user_id,
        clock.now(),
        expires_at=clock.now() + timedelta(days=30),
        name="a script",
        scopes=frozenset(ApiKeyScope),
    )
    other = _key(user_id, clock.now())

    await repo.add(key)
    await repo.add(other)

    assert await repo.get(key.id) == key
    assert await repo.get(other.id) == other
    assert await repo.get(uuid4()) is None


async def test_a_users_keys_are_those_not_revoked_newest_first_expired_ones_too(
    api_key_repository: Subject[ApiKeyRepository], clock: FakeClock
) -> None:
    repo = api_key_repository.impl
    ada, bob = await api_key_repository.new_user(), await api_key_repository.new_user()
    t0 = clock.now()
    oldest = _key(ada, t0 - timedelta(days=3))
    expired = _key(ada, t0 - timedelta(days=2), expires_at=t0 - timedelta(days=1))
    revoked = _key(ada, t0 - timedelta(days=1))
    newest = _key(ada, t0)
    for key in (expired, newest, revoked, oldest, _key(bob, t0)):
        await repo.add(key)
    await repo.revoke(revoked.id, t0)

    assert list(await repo.for_user(ada)) == [newest, expired, oldest]
    assert list(await repo.for_user(uuid4())) == []


async def test_every_key_not_revoked_comes_with_its_users_email_by_email_then_newest_first(
    api_key_repository: Subject[ApiKeyRepository], clock: FakeClock
) -> None:
    repo = api_key_repository.impl
    users = [await api_key_repository.new_user() for _ in range(3)]
    t0 = clock.now()
    keys: dict[UUID, list[ApiKey]] = {}
    for n, user_id in enumerate(users):
        # Added out of order, each user's keys interleaved with the others'.
        keys[user_id] = [_key(user_id, t0 - timedelta(hours=h + n)) for h in (2, 0, 1)]
    for position in range(3):
        for user_id in users:
            await repo.add(keys[user_id][position])
    expired = _key(users[0], t0 - timedelta(hours=5), expires_at=t0 - timedelta(hours=4))
    revoked = _key(users[1], t0)
    await repo.add(expired)
    await repo.add(revoked)
    await repo.revoke(revoked.id, t0)

    owned = await repo.every_key()

    expected = [
        (email_of(user_id), key)
        for user_id in sorted(users, key=email_of)
        for key in sorted(
            [*keys[user_id], *([expired] if user_id == users[0] else [])],
            key=lambda k: k.created_at,
            reverse=True,
        )
    ]
    assert [(o.email, o.key) for o in owned] == expected


async def test_usable_keys_are_counted_per_user_and_neither_revoked_nor_expired(
    api_key_repository: Subject[ApiKeyRepository], clock: FakeClock
) -> None:
    repo = api_key_repository.impl
    ada, bob = await api_key_repository.new_user(), await api_key_repository.new_user()
    at = clock.now()
    for key in (
        _key(ada, at - timedelta(days=1)),  # usable, no expiry
        _key(ada, at - timedelta(days=1), expires_at=at + timedelta(seconds=1)),  # usable
        _key(ada, at - timedelta(days=1), expires_at=at),  # expired from this instant on
        _key(ada, at - timedelta(days=1), expires_at=at - timedelta(days=1)),  # expired
        _key(bob, at - timedelta(days=1)),
    ):
        await repo.add(key)
    revoked = _key(ada, at - timedelta(days=1))
    await repo.add(revoked)
    assert await repo.count_usable(ada, at) == 3
    await repo.revoke(revoked.id, at)

    assert await repo.count_usable(ada, at) == 2
    assert await repo.count_usable(bob, at) == 1
    assert await repo.count_usable(ada, at + timedelta(seconds=1)) == 1
    assert await repo.count_usable(uuid4(), at) == 0


async def test_a_key_is_revoked_once(
    api_key_repository: Subject[ApiKeyRepository], clock: FakeClock
) -> None:
    repo, user_id = api_key_repository.impl, await api_key_repository.new_user()
    key, other = _key(user_id, clock.now()), _key(user_id, clock.now())
    await repo.add(key)
    await repo.add(other)
    at = clock.now() + timedelta(minutes=5)

    revoked = await repo.revoke(key.id, at)
    again = await repo.revoke(key.id, at + timedelta(minutes=1))

    assert revoked is not None
    assert revoked == attrs.evolve(key, revoked_at=at)
    assert again is None
    assert await repo.get(key.id) == revoked  # still there, as revoked the first time
    assert await repo.get(other.id) == other
    assert await repo.revoke(uuid4(), at) is None


async def test_touch_writes_the_last_use_at_most_once_per_resolution(
    api_key_repository: Subject[ApiKeyRepository], clock: FakeClock
) -> None:
    repo, user_id = api_key_repository.impl, await api_key_repository.new_user()
    key = _key(user_id, clock.now())
    await repo.add(key)
    first = clock.now() + timedelta(seconds=10)

    await repo.touch(key.id, first)
    assert (await _stored(repo, key.id)).last_used_at == first

    await repo.touch(key.id, first + LAST_USED_RESOLUTION - timedelta(microseconds=1))
    assert (await _stored(repo, key.id)).last_used_at == first

    later = first + LAST_USED_RESOLUTION
    await repo.touch(key.id, later)
    assert (await _stored(repo, key.id)).last_used_at == later

    await repo.touch(key.id, first)  # a use seen late changes nothing
    assert (await _stored(repo, key.id)).last_used_at == later
    await repo.touch(uuid4(), later)  # no such key: nothing to write
    assert await repo.get(key.id) == attrs.evolve(key, last_used_at=later)
