"""RedisCache's epoch: one process moves it on, and no process trusts older entries."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from engage_adapters.redis_store import RedisCache


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid4().hex}"


async def test_every_process_sees_entries_of_the_others(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    one, other = RedisCache(redis_client, prefix=prefix), RedisCache(redis_client, prefix=prefix)

    await one.set("key", b"value", ttl=60)

    assert await other.get("key") == b"value"


async def test_moving_the_epoch_on_orphans_every_entry_in_every_process(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    one, other = RedisCache(redis_client, prefix=prefix), RedisCache(redis_client, prefix=prefix)
    await one.set("session", b"live", ttl=60)
    assert await other.get("session") == b"live"

    await one.advance_epoch()

    assert await other.get("session") is None  # no refresh interval: the very next read
    assert await one.get("session") is None
    assert await other.set("session", b"live", ttl=60, only_if_absent=True) is True


async def test_a_write_racing_a_move_lands_under_the_new_epoch(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    stale, mover = RedisCache(redis_client, prefix=prefix), RedisCache(redis_client, prefix=prefix)
    await stale.get("anything")  # learns the epoch
    await mover.advance_epoch()  # behind stale's back

    await stale.set("session", b"ended", ttl=60)

    assert await mover.get("session") == b"ended"
    assert stale.epoch_of("session") == mover.epoch_of("session")


async def test_deletes_follow_the_epoch_too(redis_client: aioredis.Redis, prefix: str) -> None:
    stale, mover = RedisCache(redis_client, prefix=prefix), RedisCache(redis_client, prefix=prefix)
    await stale.get("anything")  # learns the epoch
    await mover.set("version", b"token", ttl=60)
    await mover.advance_epoch()
    await mover.set("version", b"token", ttl=60)

    await stale.delete("version")

    assert await mover.get("version") is None


async def test_writes_racing_reads_that_learn_a_new_epoch_all_land_under_it(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """Calls of one process overlap: a read may learn the new epoch while a write
    made under the old one is under way. That write must still be made again."""
    stale, mover = RedisCache(redis_client, prefix=prefix), RedisCache(redis_client, prefix=prefix)
    keys = [f"session{n}" for n in range(20)]
    await mover.advance_epoch()  # behind stale's back

    await asyncio.gather(
        *(stale.set(key, b"ended", ttl=60) for key in keys),
        *(stale.get(key) for key in keys),
    )

    assert [await mover.get(key) for key in keys] == [b"ended"] * len(keys)
