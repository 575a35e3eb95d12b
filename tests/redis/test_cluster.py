"""Two `engage serve` processes over one real 3-node Redis Cluster (valkey) and one
PostgreSQL: limits are one stream across them, a logout on one is seen by the
other at once, the cache spreads over every node with each operation in one
slot, and a node killed in the middle of a load run costs no request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import httpx
import psycopg
import pytest

import redis
from engage_adapters.redis_breaker import COOLDOWN
from engage_adapters.redis_store import RedisCache, RedisClient, open_redis
from support.serve import running_server, serve_env
from support.traffic import LoadRun, bad_logins, bearer
from support.valkey_cluster import ValkeyCluster, start_valkey_cluster

KILLED = 1  # the node the last test kills
SERVED: list[str] = []  # what both processes write (errors and warnings), as it comes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """A cluster of this module's own: its last test kills a node."""
    cluster = start_valkey_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def servers(
    pg_url: str, cluster: ValkeyCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Two `engage serve` processes, each on a port of its own, sharing the
    database and the cluster; their base URLs."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("TRUNCATE users CASCADE")
    env = serve_env(pg_url, tmp_path_factory.mktemp("engage"), ENGAGE_REDIS_URL=cluster.url)
    with ExitStack() as stack:
        one = stack.enter_context(running_server(env, workers=1, output=SERVED))[1]
        other = stack.enter_context(running_server(env, workers=1, output=SERVED))[1]
        yield one, other


@pytest.fixture
async def cluster_client(cluster: ValkeyCluster) -> AsyncIterator[RedisClient]:
    client = open_redis(cluster.url, connect_timeout=5, command_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


async def bearer_on(base: str, email: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base) as client:
        return await bearer(client, email)


def keys_on(port: int, pattern: str) -> list[bytes]:
    with redis.Redis(port=port, socket_timeout=5) as node:
        return list(node.scan_iter(pattern))


async def test_bad_logins_for_one_email_across_both_processes_are_one_stream(
    servers: tuple[str, str],
) -> None:
    await bearer_on(servers[0], "ada@example.com")
    responses = await bad_logins(servers, "ada@example.com", 10)

    assert [r.status_code for r in responses] == [401] * 5 + [429] * 5
    assert all(int(r.headers["Retry-After"]) > 0 for r in responses[5:])


async def test_a_logout_on_one_process_ends_the_session_on_the_other_at_once(
    servers: tuple[str, str],
) -> None:
    one, other = servers
    auth = await bearer_on(one, "grace@example.com")
    async with httpx.AsyncClient(base_url=other, headers=auth) as on_other:
        assert (await on_other.get("/api/auth/me")).status_code == 200  # cached "live"
        async with httpx.AsyncClient(base_url=one, headers=auth) as on_one:
            assert (await on_one.post("/api/auth/logout")).status_code == 204

        assert (await on_other.get("/api/auth/me")).status_code == 401


async def test_the_cache_spreads_over_every_node_each_key_beside_its_epoch(
    cluster: ValkeyCluster, cluster_client: RedisClient
) -> None:
    cache = RedisCache(cluster_client, prefix="spread")
    await cache.advance_epoch()
    for n in range(200):
        await cache.set(f"key{n}", b"value", ttl=60)

    for port in cluster.ports:
        entries = [k for k in keys_on(port, "{spread:*") if not k.endswith(b":epoch")]
        epochs = set(keys_on(port, "{spread:*}:epoch"))
        assert entries, f"no cache entry on the node at {port}"
        # The epoch that governs an entry lives on the entry's node (its slot).
        assert {entry.split(b"}")[0] + b"}:epoch" for entry in entries} <= epochs


async def test_killing_a_node_in_a_load_run_costs_no_request(
    servers: tuple[str, str], cluster: ValkeyCluster
) -> None:
    auths = [await bearer_on(servers[n % 2], f"load{n}@example.com") for n in range(6)]
    run = LoadRun()
    # Each session is used on the process that did not issue it, as behind a balancer.
    for n, auth in enumerate(auths):
        run.start(servers[(n + 1) % 2], auth)
    await asyncio.sleep(1.0)
    cluster.kill(KILLED)
    await asyncio.sleep(2.5)  # past the cluster's node timeout: the cluster refuses too
    during = [await redis_check(base) for base in servers]
    await asyncio.sleep(0.5)
    cluster.restart(KILLED)
    await asyncio.to_thread(cluster.wait_until_ok)
    await asyncio.sleep(COOLDOWN + 1.0)  # past the breaker's cooldown: Redis in use again
    await run.stop()
    readiness = [await ready_again(base) for base in servers]

    # The figures for the record (pytest -s).
    print(f"\nload run, 2 processes over a 3-node cluster, a node killed for 3 s: {run.figures()}")
    errors = [line for line in SERVED if '"level": "error"' in line]
    assert set(run.outcomes) <= {"200", "201"}, (run.outcomes, errors)
    assert run.outcomes["200"] > 100
    assert all(state.startswith("degraded: ") for state in during), during  # served without it
    assert readiness == ["ok", "ok"]
    assert keys_on(cluster.ports[KILLED], "*")  # it came back empty: in use again


async def redis_check(base: str) -> str:
    """What the process's /readyz says of Redis."""
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200  # a cache that is down costs speed, not readiness
    return str(response.json()["checks"]["redis"])


async def ready_again(base: str, within: float = 10.0) -> str:
    """The process's Redis check once it says "ok" (or the last answer, past ``within``)."""
    deadline = time.monotonic() + within
    while True:
        state = await redis_check(base)
        if state == "ok" or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.2)
