"""What one open live stream costs the Python side of a worker, by allocating line.

    python bench/stream_memory.py [--streams 500] [--per-user 10] [--top 25]

Builds the app over in-memory storage in this process, signs up
streams/per-user users, then opens the streams by calling the ASGI app
directly (a scope as granian builds it, a ``receive`` that waits for a
disconnect that never comes, a ``send`` that keeps nothing), and reports
tracemalloc's growth per stream, by the lines that allocated it. The
server's own per-connection cost (granian, in Rust) is not in it:
``bench/stream.py`` measures the whole worker.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import secrets
import sys
import tempfile
import tracemalloc
from typing import Any

from common import positive
from litestar import Litestar
from litestar.testing import AsyncTestClient

from engage_adapters.bootstrap import build_services, http_policy
from engage_adapters.settings import load_settings
from engage_http.app import create_app
from engage_http.observability import configure_logging

STREAM = b"/api/dashboard/stream"
PASSWORD = "bench-password-123"


def _scope(token: str) -> dict[str, Any]:
    """What granian hands the app for ``GET /api/dashboard/stream`` from httpx-sse."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": STREAM.decode(),
        "raw_path": STREAM,
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"accept", b"text/event-stream"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"connection", b"keep-alive"),
            (b"user-agent", b"python-httpx/0.28.1"),
            (b"cache-control", b"no-store"),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "state": {},
    }


class _Connection:
    """One client: its disconnect never comes; its first body chunk says it opened."""

    def __init__(self, opened: asyncio.Event, count: list[int], expected: int) -> None:
        self._opened = opened
        self._count = count
        self._expected = expected
        self._seen_body = False
        self.gone = asyncio.get_running_loop().create_future()

    async def receive(self) -> dict[str, Any]:
        await self.gone
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise SystemExit(f"bench: the stream answered {message['status']}")
        if message["type"] == "http.response.body" and not self._seen_body:
            self._seen_body = True
            self._count[0] += 1
            if self._count[0] == self._expected:
                self._opened.set()


async def _tokens(client: AsyncTestClient[Litestar], users: int) -> list[str]:
    run = secrets.token_hex(4)
    tokens = []
    for n in range(users):
        body = {"email": f"mem{n}-{run}@example.com", "password": PASSWORD}
        (await client.post("/api/auth/signup", json=body)).raise_for_status()
        tokens.append((await client.post("/api/auth/token", json=body)).json()["access_token"])
    return tokens


async def _open(app: Litestar, tokens: list[str], per_user: int) -> list[Any]:
    opened = asyncio.Event()
    count = [0]
    expected = len(tokens) * per_user
    connections = []
    tasks = []
    for token in tokens:
        for _ in range(per_user):
            connection = _Connection(opened, count, expected)
            connections.append(connection)
            coroutine = app(_scope(token), connection.receive, connection.send)  # type: ignore[arg-type]
            tasks.append(asyncio.get_running_loop().create_task(coroutine))
    await asyncio.wait_for(opened.wait(), 120)
    await asyncio.sleep(0.5)
    return [connections, tasks]


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="engage-bench-memory-") as data:
        env = {
            "ENGAGE_JWT_SECRET": secrets.token_urlsafe(48),
            "ENGAGE_DATA_DIR": data,
            "ENGAGE_BCRYPT_ROUNDS": "4",
            "ENGAGE_AUTH_RATE_PER_MINUTE": "1000000",
            "ENGAGE_STREAMS_PER_USER": str(args.per_user + 1),  # the warm-up's one more
            "ENGAGE_LOG_LEVEL": "WARNING",
        }
        settings = load_settings(env)
        policy = http_policy(settings, bind_host="127.0.0.1")
        app = create_app(lambda: build_services(settings, storage="memory"), policy)
        async with AsyncTestClient(app) as client:
            tokens = await _tokens(client, args.streams // args.per_user)
            # One stream first, so what the first one builds once (caches) is not counted.
            warm = await _open(app, tokens[:1], 1)
            gc.collect()
            tracemalloc.start(args.frames)
            before = tracemalloc.take_snapshot()
            held = await _open(app, tokens, args.per_user)
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            streams = len(held[0])
            stats = after.compare_to(before, args.by if args.frames == 1 else "traceback")
            total = sum(s.size_diff for s in stats)
            print(
                f"engage-suite stream memory: Python {sys.version.split()[0]}, {streams} streams,"
                f" tracemalloc growth {total / streams / 1024:.2f} KiB per stream"
            )
            for stat in stats[: args.top]:
                frames = stat.traceback.format()[-2 * args.frames :]
                print(f"{stat.size_diff / streams:8.0f} B  {stat.count_diff / streams:5.1f} blocks")
                for line in frames:
                    print(f"            {line.strip()}")
            for connection in [*held[0], *warm[0]]:
                connection.gone.set_result(None)
            await asyncio.gather(*held[1], *warm[1], return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=positive, default=500)
    parser.add_argument("--per-user", type=positive, default=10)
    parser.add_argument("--top", type=positive, default=25, help="lines to show")
    parser.add_argument("--frames", type=positive, default=1, help="frames per allocation")
    parser.add_argument("--by", choices=["lineno", "filename"], default="lineno")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    asyncio.run(measure(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
