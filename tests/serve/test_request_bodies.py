"""A request body that ends before it should, sent to the real `engage serve`: granian
ends it with a disconnect whatever the cause, and the answer is still no 500. A
malformed chunked body is a 400 problem; a client that hangs up mid-body is
counted as 499 (client closed request), not as a server fault."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.serve import running_server

HEAD = (
    b"POST /api/auth/signup HTTP/1.1\r\nHost: engage\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\n"
)


@pytest.fixture(scope="module")
def base(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data: Path = tmp_path_factory.mktemp("request-bodies")
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": pg_url,
        "ENGAGE_JWT_SECRET": "s" * 40,
        "ENGAGE_DATA_DIR": str(data),
        "ENGAGE_BCRYPT_ROUNDS": "4",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with running_server(env) as (_, url):
        yield url


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _answer(sock: socket.socket) -> tuple[bytes, bytes]:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"-1\r\nabc\r\n0\r\n\r\n", b"3\r\nabcX\r\n0\r\n\r\n"],
    ids=["bad-size", "negative-size", "data-past-its-size"],
)
def test_a_malformed_chunked_body_is_a_400_problem(base: str, chunks: bytes) -> None:
    with _connect(base) as sock:
        sock.sendall(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
        head, body = _answer(sock)

    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["status"] == 400


def test_a_client_that_hangs_up_mid_body_is_counted_as_499_not_500(base: str) -> None:
    def counted(status: str) -> float:
        text = httpx.get(f"{base}/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("engage_requests_total{")
            and 'path="/api/auth/signup"' in line
            and f'status_code="{status}"' in line
        )

    before = {status: counted(status) for status in ("499", "500")}
    with _connect(base) as sock:
        sock.sendall(HEAD.replace(b"Connection: close\r\n", b"Content-Length: 100\r\n\r\n"))
        sock.sendall(b'{"email":')
        time.sleep(0.3)  # the server has the head and part of the body

    deadline = time.monotonic() + 10
    while counted("499") == before["499"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counted("499") == before["499"] + 1
    assert counted("500") == before["500"]


def test_an_http_1_1_request_without_a_host_is_a_400_problem(base: str) -> None:
    with _connect(base) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        head, body = _answer(sock)

    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"content-type: application/problem+json" in head.lower()
    assert "Host" in json.loads(body)["detail"]
