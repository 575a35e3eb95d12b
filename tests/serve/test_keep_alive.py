"""A body over 1 MiB on a keep-alive connection to the real `engage serve`: the 413 says
`Connection: close` (the rest of the body is never read, so the server drops the
connection), and a client that honours it carries on with a new connection."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.serve import running_server

MIB = 1024 * 1024
CHUNK = 16 * 1024


@pytest.fixture(scope="module")
def base(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data: Path = tmp_path_factory.mktemp("keep-alive")
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": "s" * 40,
        "ENGAGE_DATA_DIR": str(data),
    }
    with running_server(env) as (_, url):
        yield url


def _read_head(sock: socket.socket) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received.partition(b"\r\n\r\n")[0]


def test_a_chunked_body_over_1_mib_is_413_with_connection_close(base: str) -> None:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/dashboard/metrics HTTP/1.1\r\nHost: engage\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(MIB // CHUNK + 4):
                sock.sendall(b"%x\r\n%s\r\n" % (CHUNK, b" " * CHUNK))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may stop reading once it has answered: that is the point

        head = _read_head(sock).lower()

    assert head.startswith(b"http/1.1 413"), head
    assert b"\r\nconnection: close" in head, head


def test_a_keep_alive_client_carries_on_after_a_413(base: str) -> None:
    def body() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for _ in range(MIB // CHUNK + 4):
            yield b" " * CHUNK

    with httpx.Client(base_url=base, timeout=10) as client:
        refused = client.post(
            "/api/dashboard/metrics", content=body(), headers={"Content-Type": "application/json"}
        )
        assert refused.status_code == 413
        assert refused.headers["connection"] == "close"

        for _ in range(3):
            assert client.get("/healthz").status_code == 200
