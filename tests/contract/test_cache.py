"""Contract of Cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engage_core.ports import Cache

if TYPE_CHECKING:
    from conftest import Subject

# Short, because a real store's time can only be advanced by sleeping.
SHORT_TTL = 0.3
LONG_TTL = 60.0


async def test_a_missing_key_reads_as_none(cache_store: Subject[Cache]) -> None:
    assert await cache_store.impl.get("missing") is None


async def test_a_stored_value_reads_back(cache_store: Subject[Cache]) -> None:
    assert await cache_store.impl.set("key", b"\x00value\xff", ttl=LONG_TTL) is True

    assert await cache_store.impl.get("key") == b"\x00value\xff"


async def test_set_overwrites(cache_store: Subject[Cache]) -> None:
    await cache_store.impl.set("key", b"first", ttl=LONG_TTL)

    assert await cache_store.impl.set("key", b"second", ttl=LONG_TTL) is True

    assert await cache_store.impl.get("key") == b"second"


async def test_a_value_expires_after_its_ttl(cache_store: Subject[Cache]) -> None:
    await cache_store.impl.set("short", b"value", ttl=SHORT_TTL)
    await cache_store.impl.set("long", b"value", ttl=LONG_TTL)

    await cache_store.advance(SHORT_TTL * 2)

    assert await cache_store.impl.get("short") is None
    assert await cache_store.impl.get("long") == b"value"


async def test_only_if_absent_does_not_overwrite(cache_store: Subject[Cache]) -> None:
    await cache_store.impl.set("key", b"first", ttl=LONG_TTL)

    assert await cache_store.impl.set("key", b"second", ttl=LONG_TTL, only_if_absent=True) is False

    assert await cache_store.impl.get("key") == b"first"


async def test_only_if_absent_stores_when_absent_or_expired(cache_store: Subject[Cache]) -> None:
    assert await cache_store.impl.set("new", b"value", ttl=LONG_TTL, only_if_absent=True) is True
    await cache_store.impl.set("old", b"stale", ttl=SHORT_TTL)
    await cache_store.advance(SHORT_TTL * 2)

    assert await cache_store.impl.set("old", b"fresh", ttl=LONG_TTL, only_if_absent=True) is True

    assert await cache_store.impl.get("new") == b"value"
    assert await cache_store.impl.get("old") == b"fresh"


async def test_delete_removes_every_key_given(cache_store: Subject[Cache]) -> None:
    for key in ("a", "b", "c"):
        await cache_store.impl.set(key, key.encode(), ttl=LONG_TTL)

    await cache_store.impl.delete("a", "b", "never-set")

    assert await cache_store.impl.get("a") is None
    assert await cache_store.impl.get("b") is None
    assert await cache_store.impl.get("c") == b"c"


async def test_delete_of_no_keys_does_nothing(cache_store: Subject[Cache]) -> None:
    await cache_store.impl.set("a", b"a", ttl=LONG_TTL)

    await cache_store.impl.delete()

    assert await cache_store.impl.get("a") == b"a"
