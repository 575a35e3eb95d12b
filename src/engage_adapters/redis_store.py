"""Redis (or Valkey) behind the cache and rate-limiter ports.

One server (``redis://``, ``rediss://``, ``unix://``) or a Redis Cluster
(``redis+cluster://host:port,host:port``, ``rediss+cluster://`` for TLS): every
operation stays in one hash slot, so the adapters work the same on both. A
limiter script touches one key; a cache operation touches its key and its
shard's epoch, which share a hash tag (``{prefix:shard}``). Each store keeps
its keys under its own prefix, so one Redis can serve several deployments or
test runs side by side.

The client fails fast (short timeouts, no retries): ``redis_breaker`` decides
what a failure means, and the caller never waits long on a sick Redis.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import zlib
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis.asyncio as aioredis
from attrs import frozen
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from engage_core.ports import RateDecision

__all__ = [
    "CACHE_SHARDS",
    "CLUSTER_SCHEMES",
    "COMMAND_TIMEOUT",
    "CONNECT_TIMEOUT",
    "ClusterAddress",
    "EpochChurn",
    "RedisCache",
    "RedisClient",
    "RedisRateLimiter",
    "drop_idle_connections",
    "open_redis",
    "parse_cluster_url",
]

CONNECT_TIMEOUT = 0.25
COMMAND_TIMEOUT = 0.25
CACHE_SHARDS = 64
_MAX_EPOCH_RETRIES = 5
DEFAULT_PORT = 6379
# A cluster URL's scheme → the scheme of one node's URL.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# What a cluster URL's query may set: TLS material (anything else is refused).
_CLUSTER_OPTIONS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")

RedisClient = aioredis.Redis | RedisCluster
AnyPipeline = Pipeline | ClusterPipeline


@frozen
class ClusterAddress:
    """A Redis Cluster URL taken apart: the first node's URL (credentials and TLS
    options included, as redis-py reads them) and every node's address."""

    first_node_url: str
    nodes: tuple[tuple[str, int], ...]


def parse_cluster_url(url: str) -> ClusterAddress | None:
    """``redis+cluster://[user:password@]host:port,host:port[/0][?ssl_ca_certs=...]``
    (or ``rediss+cluster://``) taken apart; None for a URL of one server.
    ``ValueError`` says what is wrong with a malformed one."""
    scheme, separator, rest = url.strip().partition("://")
    if not separator or scheme not in CLUSTER_SCHEMES:
        return None
    location = re.split(r"[/?#]", rest, maxsplit=1)[0]
    tail = urlsplit(f"//node{rest[len(location) :]}")  # the path and query, as in any URL
    credentials, _, hosts = location.rpartition("@")
    nodes = tuple(_node(raw) for raw in hosts.split(",") if raw.strip())
    if not nodes:
        raise ValueError(f"names no cluster node (use {scheme}://host:port,host:port)")
    if tail.path not in ("", "/", "/0"):
        raise ValueError(
            f"names database {tail.path.lstrip('/')!r}: a Redis Cluster has only database 0"
        )
    options = parse_qsl(tail.query, keep_blank_values=True)
    refused = sorted({name for name, _ in options if name not in _CLUSTER_OPTIONS})
    if refused:
        raise ValueError(
            f"sets {', '.join(refused)}: a cluster URL may set only {', '.join(_CLUSTER_OPTIONS)}"
        )
    host, port = nodes[0]
    shown = f"[{host}]" if ":" in host else host
    userinfo = f"{credentials}@" if credentials else ""
    query = f"?{tail.query}" if tail.query else ""
    first = f"{CLUSTER_SCHEMES[scheme]}://{userinfo}{shown}:{port}{query}"
    return ClusterAddress(first_node_url=first, nodes=nodes)


def _node(raw: str) -> tuple[str, int]:
    try:
        parts = urlsplit(f"//{raw.strip()}")
        port = parts.port
    except ValueError:
        raise ValueError(f"names cluster node {raw.strip()!r}, which is not host:port") from None
    if not parts.hostname or port == 0:
        raise ValueError(f"names cluster node {raw.strip()!r}, which is not host:port")
    return parts.hostname, port or DEFAULT_PORT


def open_redis(
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    command_timeout: float = COMMAND_TIMEOUT,
) -> RedisClient:
    """A client for ``url`` (one server, or a cluster by its nodes) that connects
    lazily and gives up quickly: one try, a quarter of a second to connect and to
    answer. Close it with ``aclose()``."""
    options: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": command_timeout,
        # A failure must reach the circuit breaker at once, not after retries
        # that hold the request; the breaker decides what to do about it.
        "retry": Retry(NoBackoff(), 0),
        "client_name": "engage",
    }
    cluster = parse_cluster_url(url)
    if cluster is None:
        return aioredis.Redis.from_url(url, **options)
    return RedisCluster.from_url(
        cluster.first_node_url,
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes[1:]],
        **options,
    )


async def drop_idle_connections(client: RedisClient) -> None:
    """Close the pooled connections nobody is using (after an outage each is dead,
    and would fail once); the next command opens fresh ones."""
    if isinstance(client, RedisCluster):
        await asyncio.gather(*(node.disconnect_free_connections() for node in client.get_nodes()))
    else:
        await client.connection_pool.disconnect(inuse_connections=False)


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class EpochChurn(RedisError):
    """The cache epoch kept moving under one operation."""


class RedisCache:
    """The cache port in Redis, under *epochs*.

    Keys are spread over ``shards`` hash tags: a key lives at
    ``{<prefix>:<shard>}:<epoch>:<key>``, and ``{<prefix>:<shard>}:epoch`` holds
    its shard's current epoch, in the same hash slot (so on one node of a
    cluster) as the keys it governs, while the shards spread over the nodes.
    Moving the epochs on (``advance_epoch``) orphans everything cached so far at
    once, in every process: that is what a process does once Redis is back after
    it lost a write there (a session ended, a dashboard changed), since the lost
    write may have left a stale answer behind. Orphans expire with their TTLs.

    Each operation reads its shard's epoch in the same round trip (a pipeline,
    whose commands one node runs in order): a read checks the epoch before
    reading, a write checks it after writing and, if it moved meanwhile, writes
    again under the new one. So no process reads under an epoch that was already
    left behind, and no write is lost to a move.
    """

    def __init__(
        self, client: RedisClient, *, prefix: str = "engage:cache", shards: int = CACHE_SHARDS
    ) -> None:
        self._client = client
        self._tags = tuple(f"{{{prefix}:{shard}}}" for shard in range(shards))
        self._epochs = [0] * shards  # the last epoch seen per shard; checked on every operation

    def epoch_of(self, key: str) -> int:
        """The epoch last seen for ``key``'s shard."""
        return self._epochs[self._shard_of(key)]

    async def advance_epoch(self) -> None:
        """Stop trusting anything cached so far, in every process."""
        async with self._client.pipeline(transaction=False) as pipe:
            for tag in self._tags:
                pipe.incr(f"{tag}:epoch")
            self._epochs = [int(epoch) for epoch in await pipe.execute()]

    def _shard_of(self, key: str) -> int:
        # crc32, not hash(): every process must put a key in the same shard.
        return zlib.crc32(key.encode("utf-8")) % len(self._tags)

    def _epoch_key(self, shard: int) -> str:
        return f"{self._tags[shard]}:epoch"

    def _key(self, shard: int, key: str, epoch: int) -> str:
        return f"{self._tags[shard]}:{epoch}:{key}"

    def _seen(self, shard: int, raw: object, used: int) -> bool:
        """Record the epoch Redis reported; True when it is the one just ``used``
        (compared with that, not with the latest seen: other calls of this
        process may have learnt a newer one meanwhile)."""
        current = int(raw) if raw is not None else 0  # type: ignore[call-overload]
        self._epochs[shard] = current
        return current == used

    async def get(self, key: str) -> bytes | None:
        shard = self._shard_of(key)
        for _ in range(_MAX_EPOCH_RETRIES):
            epoch = self._epochs[shard]
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(self._epoch_key(shard))
                pipe.get(self._key(shard, key, epoch))
                current, value = await pipe.execute()
            if self._seen(shard, current, epoch):
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

    async def _write(
        self, keys: Sequence[str], command: Callable[[AnyPipeline, str], object]
    ) -> list[Any]:
        """``command(pipe, key)`` for each key under its shard's current epoch, each
        shard's followed by a check that its epoch did not move meanwhile; the
        shards whose epoch did move, again under the new one. Results in ``keys``' order."""
        results: dict[int, Any] = {}
        pending: dict[int, list[int]] = {}  # shard → positions in keys
        for position, key in enumerate(keys):
            pending.setdefault(self._shard_of(key), []).append(position)
        for _ in range(_MAX_EPOCH_RETRIES):
            used = {shard: self._epochs[shard] for shard in pending}
            async with self._client.pipeline(transaction=False) as pipe:
                for shard, positions in pending.items():
                    for position in positions:
                        command(pipe, self._key(shard, keys[position], used[shard]))
                    pipe.get(self._epoch_key(shard))
                replies = iter(await pipe.execute())
            moved: dict[int, list[int]] = {}
            for shard, positions in pending.items():
                for position in positions:
                    results[position] = next(replies)
                if not self._seen(shard, next(replies), used[shard]):
                    moved[shard] = positions
            if not moved:
                return [results[position] for position in range(len(keys))]
            pending = moved
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

    def __init__(self, client: RedisClient, *, prefix: str = "engage:rate") -> None:
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
