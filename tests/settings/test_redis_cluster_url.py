"""ENGAGE_REDIS_URL naming a Redis Cluster: ``redis+cluster://host:port,host:port``
(``rediss+cluster://`` for TLS) opens redis-py's cluster client on those nodes; a
malformed one stops start-up with a message that says what is wrong."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection

from engage_adapters.redis_store import open_redis
from engage_adapters.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000",
        "redis+cluster://cache.internal",  # one node is enough to find the others
        "rediss+cluster://user:p%40ss@[fd00::1]:7000,[fd00::2]:7000/0",
        "rediss+cluster://a:7000?ssl_ca_certs=/etc/ssl/ca.pem&ssl_cert_reqs=required",
    ],
)
def test_a_cluster_url_is_accepted(url: str) -> None:
    assert load_settings({"ENGAGE_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("redis+cluster://", "names no cluster node (use redis+cluster://host:port,host:port)"),
        ("redis+cluster://,,", "names no cluster node"),
        ("redis+cluster://a:7000,b:port", "names cluster node 'b:port', which is not host:port"),
        ("rediss+cluster://a:7000,b:0", "names cluster node 'b:0', which is not host:port"),
        ("redis+cluster://a:99999", "names cluster node 'a:99999', which is not host:port"),
        ("redis+cluster://a:7000,:7001", "names cluster node ':7001', which is not host:port"),
        ("redis+cluster://a:7000/2", "names database '2': a Redis Cluster has only database 0"),
        ("redis+cluster://a:7000?db=1", "sets db: a cluster URL may set only ssl_ca_certs"),
        ("cluster://a:7000", "must be a URL starting with redis:// or rediss:// or unix://"),
    ],
)
def test_a_malformed_cluster_url_is_refused_with_what_is_wrong(url: str, fault: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"ENGAGE_REDIS_URL": url})

    [line] = caught.value.faults
    assert line.startswith(f"ENGAGE_REDIS_URL {fault}")


async def test_a_cluster_url_opens_the_cluster_client_on_every_node_named() -> None:
    client = open_redis(
        "redis+cluster://user:secret@10.0.0.1:7000,10.0.0.2:7001", command_timeout=1
    )
    try:
        assert isinstance(client, RedisCluster)
        assert sorted(node.name for node in client.startup_nodes) == [
            "10.0.0.1:7000",
            "10.0.0.2:7001",
        ]
        assert client.connection_kwargs["username"] == "user"
        assert client.connection_kwargs["password"] == "secret"
        assert client.connection_kwargs["socket_timeout"] == 1
        assert client.retry.get_retries() == 0  # failures go to the circuit breaker at once
    finally:
        await client.aclose()


async def test_a_tls_cluster_url_opens_tls_connections() -> None:
    client = open_redis("rediss+cluster://a:7000?ssl_cert_reqs=none")
    try:
        assert isinstance(client, RedisCluster)
        assert client.connection_kwargs["connection_class"] is SSLConnection
        assert client.connection_kwargs["ssl_cert_reqs"] == "none"
    finally:
        await client.aclose()


async def test_a_server_url_still_opens_the_client_of_one_server() -> None:
    client = open_redis("redis://127.0.0.1:6379/2")
    try:
        assert isinstance(client, Redis)
    finally:
        await client.aclose()
