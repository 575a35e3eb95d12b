"""Redis (or Valkey) behind the cache, rate-limiter and idempotency ports.

Every operation touches one key (scripts included), so the adapters also work
on a Redis cluster. Each store keeps its keys under its own prefix, so one
Redis can serve several deployments or test runs side by side.

The client fails fast (short timeouts, no retries): ``redis_breaker`` decides
what a failure means, and the caller never waits long on a sick Redis.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from engage_core.ports import RateDecision, Reservation, StoredResponse

__all__ = [
    "COMMAND_TIMEOUT",
    "CONNECT_TIMEOUT",
    "EpochChurn",
    "RedisCache",
    "RedisIdempotencyStore",
    "RedisRateLimiter",
    "open_redis",
]

CONNECT_TIMEOUT = 0.25
COMMAND_TIMEOUT = 0.25
_MAX_EPOCH_RETRIES = 5


def open_redis(
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    command_timeout: float = COMMAND_TIMEOUT,
) -> aioredis.Redis:
    """A client for ``url`` that connects lazily and gives up quickly: one try,
    a quarter of a second to connect and to answer. Close it with ``aclose()``."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=command_timeout,
        # A failure must reach the circuit breaker at once, not after retries
        # that hold the request; the breaker decides what to do about it.
        retry=Retry(NoBackoff(), 0),
        client_name="engage",
    )


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class EpochChurn(RedisError):
    """The cache epoch kept moving under one operation."""


class RedisCache:
    """The cache port in Redis, under an *epoch*.

    Keys live at ``<prefix>:<epoch>:<key>``; ``<prefix>:epoch`` holds the
    current epoch. Moving the epoch on (``advance_epoch``) orphans everything
    cached so far at once, in every process: that is what a process does once
    Redis is back after it lost a write there (a session ended, a dashboard
    changed), since the lost write may have left a stale answer behind.
    Orphans expire with their TTLs.

    Each operation reads the epoch in the same round trip (a pipeline): a read
    checks the epoch before reading, a write checks it after writing and, if it
    moved meanwhile, writes again under the new one. So no process reads under
    an epoch that was already left behind, and no write is lost to a move.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str = "engage:cache") -> None:
        self._client = client
        self._prefix = prefix
        self._epoch_key = f"{prefix}:epoch"
        self._epoch = 0  # the last epoch seen; checked on every operation

    @property
    def epoch(self) -> int:
        return self._epoch

    async def advance_epoch(self) -> int:
        """Stop trusting anything cached so far, in every process."""
        self._epoch = int(await self._client.incr(self._epoch_key))
        return self._epoch

    def _key(self, key: str, epoch: int) -> str:
        return f"{self._prefix}:{epoch}:{key}"

    def _seen(self, raw: object) -> bool:
        """Record the epoch Redis reported; True when it is the one just used."""
        current = int(raw) if raw is not None else 0  # type: ignore[call-overload]
        if current == self._epoch:
            return True
        self._epoch = current
        return False

    async def get(self, key: str) -> bytes | None:
        for _ in range(_MAX_EPOCH_RETRIES):
            epoch = self._epoch
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(self._epoch_key)
                pipe.get(self._key(key, epoch))
                current, value = await pipe.execute()
            if self._seen(current):
                return value  # type: ignore[no-any-return]
        raise EpochChurn("the cache epoch moved during every try")

    async def set(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool:
        stored = await self._write(
            (key,), lambda pipe, k: pipe.set(k, value, px=_milliseconds(ttl), nx=only_if_absent)
        )
        return bool(stored[0])

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._write(keys, lambda pipe, k: pipe.delete(k))

    async def incr(self, key: str) -> int:
        return int((await self._write((key,), lambda pipe, k: pipe.incr(k)))[0])

    async def _write(
        self, keys: Sequence[str], command: Callable[[Pipeline, str], object]
    ) -> list[Any]:
        """``command(pipe, key)`` for each key under the current epoch, then a
        check that the epoch did not move meanwhile; if it did, again under the new one."""
        for _ in range(_MAX_EPOCH_RETRIES):
            epoch = self._epoch
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    command(pipe, self._key(key, epoch))
                pipe.get(self._epoch_key)
                *results, current = await pipe.execute()
            if self._seen(current):
                return results
        raise EpochChurn("the cache epoch moved during every try")


# A sliding-window log per key: a sorted set of event times (µs, Redis's own
# clock, so every process agrees), trimmed to the window on each call. Only an
# allowed hit adds an event: refused ones do not count. Times go through
# string.format('%d') because Lua would print them as 1.7e+15.
_RATE_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - window))
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  if ARGV[3] == '1' then
    redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[4])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
    return {1, limit - count - 1, 0}
  end
  return {1, limit - count, 0}
end
-- Allowed again once the oldest event that keeps the key at its limit leaves the window.
local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now}
"""


class RedisRateLimiter:
    """The rate-limiter port in Redis: one atomic script per call, shared by
    every process that uses the same Redis."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "engage:rate") -> None:
        self._prefix = prefix
        self._client = client
        self._script = client.register_script(_RATE_SCRIPT)

    async def hit(self, key: str, *, limit: int, window: float) -> RateDecision:
        return await self._decide(key, limit, window, count=True)

    async def peek(self, key: str, *, limit: int, window: float) -> RateDecision:
        return await self._decide(key, limit, window, count=False)

    async def reset(self, key: str) -> None:
        await self._client.delete(self._key(key))

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    async def _decide(self, key: str, limit: int, window: float, *, count: bool) -> RateDecision:
        window_us = max(1, math.ceil(window * 1_000_000))
        allowed, remaining, retry_us = await self._script(
            keys=[self._key(key)],
            args=[limit, window_us, "1" if count else "0", secrets.token_hex(8)],
        )
        return RateDecision(bool(allowed), int(remaining), int(retry_us) / 1_000_000)


# An idempotency key is a hash {fingerprint, status, body}; its TTL is the lease
# while the request runs, then the response's lifetime. Each step is one script,
# so two racing requests cannot both reserve a key.
_RESERVE_SCRIPT = """
local held = redis.call('HMGET', KEYS[1], 'fingerprint', 'status', 'body')
if held[1] then
  return {0, held[1], held[2], held[3]}
end
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1}
"""
_COMPLETE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'body', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'status') == 0 then
  redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisIdempotencyStore:
    """The idempotency port in Redis, with the semantics of the PostgreSQL store.

    Not wired by default: ``build_services`` keeps idempotency keys in
    PostgreSQL, next to the rows they guard. Here for deployments that want
    them out of the database.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str = "engage:idempotency") -> None:
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE_SCRIPT)
        self._complete = client.register_script(_COMPLETE_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)

    def _key(self, owner: UUID, key: str) -> str:
        return f"{self._prefix}:{owner}:{key}"

    async def reserve(
        self, owner: UUID, key: str, fingerprint: str, *, lease: float
    ) -> Reservation:
        reply = await self._reserve(
            keys=[self._key(owner, key)], args=[fingerprint, _milliseconds(lease)]
        )
        if reply[0] == 1:
            return Reservation(first=True)
        _, held, status, body = reply
        response = StoredResponse(int(status), bytes(body)) if status is not None else None
        return Reservation(first=False, fingerprint=held.decode("utf-8"), response=response)

    async def complete(
        self, owner: UUID, key: str, response: StoredResponse, *, ttl: float
    ) -> None:
        await self._complete(
            keys=[self._key(owner, key)],
            args=[response.status, response.body, _milliseconds(ttl)],
        )

    async def release(self, owner: UUID, key: str) -> None:
        await self._release(keys=[self._key(owner, key)])
