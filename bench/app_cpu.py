"""CPU per request of the app itself: the ASGI app called in-process, no server,
no network, no PostgreSQL (in-memory storage; or a PostgreSQL you name).

What it measures is engage-suite's own work per request (Litestar, the
middlewares, the access log, the metrics, the handler, the encoding), steadier
than any HTTP figure on a machine with other work. Production-like: the JSON
access log is written (to /dev/null) and the Prometheus metrics go to a
multiprocess directory, as under ``engage serve``.

    python bench/app_cpu.py                   # 3000 requests of each kind, 3 rounds
    python bench/app_cpu.py -n 5000 --rounds 5
    python bench/app_cpu.py --profile read    # cProfile of the reads, by own time
    python bench/app_cpu.py --database-url URL   # over that PostgreSQL (migrated; one user added)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

# Before prometheus_client is imported, as ``engage serve`` does.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="app-cpu-prom-"))

from engage_adapters.bootstrap import ANSWER_WITHIN, build_services, http_policy
from engage_adapters.postgres.migrate import upgrade
from engage_adapters.settings import load_settings
from engage_core.testing import FakePasswordHasher
from engage_http.app import create_app
from engage_http.observability import configure_logging

Headers = Sequence[tuple[str, str]]


async def call(
    app: Any, method: str, path: str, headers: Headers = (), body: bytes = b""
) -> dict[str, Any]:
    """One request, as an ASGI server would make it; the status and body sent back."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        # An HTTP/1.1 request names its Host (RFC 9112 3.2), or engage answers 400.
        "headers": [(b"host", b"127.0.0.1:8000")]
        + [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    out: dict[str, Any] = {"body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out


async def start(app: Any) -> None:
    """Run the app's lifespan start-up (and leave it running)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {message}")
    start.task = task  # type: ignore[attr-defined]  # kept alive


async def requests(app: Any) -> dict[str, tuple[Any, ...]]:
    """A new user with 60 metrics, a bearer token and an API key; the requests measured."""
    js = [("content-type", "application/json")]
    email = f"app-cpu-{os.getpid()}-{time.time_ns()}@example.com"  # new in any database
    cred = json.dumps({"email": email, "password": "correct horse battery"}).encode()
    r = await call(app, "POST", "/api/auth/signup", js, cred)
    assert r["status"] == 201, r
    r = await call(app, "POST", "/api/auth/token", js, cred)
    auth = [("authorization", f"Bearer {json.loads(r['body'])['access_token']}")]
    one = json.dumps({"metric_type": "page_view", "metric_value": 1.5}).encode()
    scopes = {"name": "b", "scopes": ["metrics:write", "metrics:read"]}
    r = await call(app, "POST", "/api/keys", auth + js, json.dumps(scopes).encode())
    assert r["status"] == 201, r
    key = [("authorization", "Bearer " + json.loads(r["body"])["key"])]
    for _ in range(60):
        await call(app, "POST", "/api/dashboard/metrics", auth + js, one)
    hundred = [
        {"metric_type": "page_view", "metric_value": i / 4, "recorded_at": "2026-01-02T03:04:05Z"}
        for i in range(100)
    ]
    batch = json.dumps({"items": hundred}).encode()
    return {
        "read": ("GET", "/api/dashboard/metrics", auth),
        "write": ("POST", "/api/dashboard/metrics", auth + js, one),
        "me": ("GET", "/api/auth/me", auth),
        "kread": ("GET", "/api/dashboard/metrics", key),
        "kwrite": ("POST", "/api/dashboard/metrics", key + js, one),
        "batch": ("POST", "/api/dashboard/metrics/batch", auth + js, batch),
    }


async def warm(app: Any, kind: str, request: tuple[Any, ...]) -> None:
    for _ in range(300):
        r = await call(app, *request)
    assert r["status"] in (200, 201), (kind, r)


async def main(
    n: int, rounds: int, profile: str | None, kinds: list[str], database_url: str | None
) -> None:
    data_dir = tempfile.mkdtemp(prefix="app-cpu-")
    settings = load_settings(
        {
            "ENGAGE_JWT_SECRET": "x" * 40,
            "ENGAGE_DATA_DIR": data_dir,
            "ENGAGE_COOKIE_SECURE": "false",
            "ENGAGE_AUTH_RATE_PER_MINUTE": "1000000",
            "ENGAGE_KEY_RATE_PER_MINUTE": "1000000",
        }
        | ({"ENGAGE_DATABASE_URL": database_url} if database_url else {})
    )
    if database_url:
        await upgrade(database_url)
    app = create_app(
        lambda: build_services(
            settings,
            storage="postgres" if database_url else "memory",
            hasher=FakePasswordHasher(),
            answer_within=ANSWER_WITHIN if database_url else None,
        ),
        http_policy(settings, bind_host="127.0.0.1"),
    )
    await start(app)
    measured = await requests(app)
    for kind in kinds if profile is not None else ():
        await warm(app, kind, measured[kind])
    if profile is not None:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(n):
            await call(app, *measured[profile])
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(
            os.environ.get("SORT", "tottime")
        ).print_stats(int(os.environ.get("TOP", "45")))
        print(text.getvalue())
        return
    figures: dict[str, list[float]] = {kind: [] for kind in kinds}
    # Reads first, all their rounds: every write adds a row the in-memory reads sort.
    for kind in sorted(kinds, key=lambda k: "write" in k or k == "batch"):
        await warm(app, kind, measured[kind])
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(n):
                await call(app, *measured[kind])
            figures[kind].append(1e6 * (time.process_time() - started) / n)
    for kind, values in figures.items():
        shown = " ".join(f"{v:5.0f}" for v in values)
        print(f"{kind:6s} min {min(values):5.0f} µs CPU/request   (rounds: {shown})")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", choices=["read", "write", "me", "kread", "kwrite", "batch"])
    parser.add_argument(
        "--kinds", default="read,me,kread,write,kwrite,batch", help="comma-separated request kinds"
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL to run over (migrated here, a user added) instead of in-memory storage",
    )
    args = parser.parse_args()
    # The production JSON access log, written where it costs what it costs but is not seen.
    real_stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
    try:
        configure_logging("INFO")
    finally:
        sys.stderr = real_stderr
    kinds = [args.profile] if args.profile else args.kinds.split(",")
    asyncio.run(main(args.n, args.rounds, args.profile, kinds, args.database_url))


if __name__ == "__main__":
    cli()
