"""The live stream's capacity: open streams on one worker, memory per stream, fan-out latency.

    python bench/stream.py [--streams 1000] [--per-user 10] [--writes 200] [--burst 5]
                           [--database-url URL] [--json out.json]

Starts `engage serve --workers 1` (its own embedded PostgreSQL in a temporary
directory, or --database-url, which must be an empty scratch database), signs
up streams/per-user users, opens that many streams on the one worker with
httpx-sse, and measures:

- memory per stream: the worker's RSS and USS after the streams opened, less
  before, over the number of streams (goal: under 20 KiB);
- fan-out latency: to a metric's arrival on each of its user's streams, for
  --writes writes one after the other (random users) and for --burst rounds of
  one write per user at once, counted twice: from just before the metric is
  POSTed (what a writer sees: the POST's own time, its queueing and its commit
  included), and from its 2xx response (the write is committed: what the
  server's delivery alone costs, give or take the time this process takes to
  read the response; goal: p99 under 100 ms); and the POSTs' own round trips, also for
  the same bursts before any stream opened (nobody follows the users, so their
  writes send no NOTIFY: what the notification costs the writers).

The clients run in this process on the same machine, so their CPU is taken
from the server's: the latencies include reading and parsing every event here.
Not a test: run it by hand, on a quiet machine, and compare between commits.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import embedded_database, external_database, free_port, positive, table
from httpx_sse import aconnect_sse

from engage_adapters.postgres.migrate import upgrade

PASSWORD = "bench-password-123"
STREAM = "/api/dashboard/stream"


# --- the server ------------------------------------------------------------------


@contextmanager
def serving(url: str, streams_per_user: int, log: Path) -> Iterator[tuple[str, psutil.Process]]:
    """`engage serve --workers 1` on a free port; its base URL and its worker process."""
    port = free_port()
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": url,
        "ENGAGE_JWT_SECRET": secrets.token_urlsafe(48),
        "ENGAGE_DATA_DIR": str(log.parent),
        "ENGAGE_BCRYPT_ROUNDS": "4",
        "ENGAGE_AUTH_RATE_PER_MINUTE": "1000000",
        "ENGAGE_STREAMS_PER_USER": str(streams_per_user),
        "ENGAGE_LOG_LEVEL": "WARNING",
    }
    with log.open("w") as output:
        server = subprocess.Popen(  # noqa: S603 - this interpreter running engage
            [sys.executable, "-m", "engage_cli", "serve", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"bench: engage serve did not start; see {log}")
                time.sleep(0.2)
            workers = psutil.Process(server.pid).children(recursive=True)
            worker = max(workers, key=lambda p: p.memory_info().rss)
            yield base, worker
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def _memory(worker: psutil.Process) -> tuple[int, int]:
    full = worker.memory_full_info()
    return full.rss, full.uss


# --- the clients -------------------------------------------------------------------


class Streams:
    """Every stream's arrivals: metric id -> the times it reached each stream."""

    def __init__(self) -> None:
        self.arrivals: dict[int, list[float]] = {}
        self.opened = 0
        self.all_open = asyncio.Event()
        self.expected = 0
        self.errors: list[str] = []

    async def read(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        try:
            async with aconnect_sse(client, "GET", STREAM, headers=headers) as source:
                if source.response.status_code != 200:
                    self.errors.append(f"status {source.response.status_code}")
                    return
                counted = False
                async for event in source.aiter_sse():
                    if not counted:  # the first message: the stream's position
                        counted = True
                        self.opened += 1
                        if self.opened == self.expected:
                            self.all_open.set()
                    if event.event == "metric":
                        self.arrivals.setdefault(int(event.id), []).append(time.perf_counter())
        except (httpx.HTTPError, asyncio.CancelledError) as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.errors.append(repr(exc))


async def _users(base: str, count: int) -> list[dict[str, str]]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        run = secrets.token_hex(4)

        async def one(n: int) -> dict[str, str]:
            body = {"email": f"stream{n}-{run}@example.com", "password": PASSWORD}
            (await client.post("/api/auth/signup", json=body)).raise_for_status()
            token = (await client.post("/api/auth/token", json=body)).json()["access_token"]
            return {"Authorization": f"Bearer {token}"}

        headers = []
        for start in range(0, count, 20):
            headers += await asyncio.gather(*(one(n) for n in range(start, min(count, start + 20))))
        return headers


# A write's metric id -> when its POST started and when its 2xx response came.
Sent = dict[int, tuple[float, float]]


async def _write(client: httpx.AsyncClient, auth: dict[str, str], sent: Sent) -> None:
    started = time.perf_counter()
    response = await client.post(
        "/api/dashboard/metrics", json={"metric_type": "bench", "metric_value": 1}, headers=auth
    )
    committed = time.perf_counter()
    response.raise_for_status()
    sent[response.json()["id"]] = (started, committed)


def _figures(streams: Streams, sent: Sent, per_user: int) -> dict[str, Any]:
    """Arrival latencies from the POST and from its response, and the POSTs' round trips."""
    from_post: list[float] = []
    from_commit: list[float] = []
    missing = 0
    for metric_id, (started, committed) in sent.items():
        arrived = streams.arrivals.get(metric_id, [])
        missing += per_user - len(arrived)
        from_post += [(t - started) * 1000 for t in arrived]
        from_commit += [(t - committed) * 1000 for t in arrived]
    posts = [(committed - started) * 1000 for started, committed in sent.values()]
    return {
        "writes": len(sent),
        "deliveries": len(from_post),
        "missing": missing,
        "p50_ms": _quantile(from_post, 0.50),
        "p99_ms": _quantile(from_post, 0.99),
        "max_ms": max(from_post, default=float("nan")),
        "from_commit_p50_ms": _quantile(from_commit, 0.50),
        "from_commit_p99_ms": _quantile(from_commit, 0.99),
        "from_commit_max_ms": max(from_commit, default=float("nan")),
        "post_p50_ms": _quantile(posts, 0.50),
        "post_p99_ms": _quantile(posts, 0.99),
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(base: str, worker: psutil.Process, args: argparse.Namespace) -> dict[str, Any]:
    users = args.streams // args.per_user
    print(f"bench: signing up {users} users", file=sys.stderr)
    auths = await _users(base, users)
    print(f"bench: {args.burst} bursts of one write per user, no stream open", file=sys.stderr)
    unfollowed: Sent = {}
    async with httpx.AsyncClient(base_url=base, timeout=60) as writers:
        for _ in range(args.burst):
            await asyncio.gather(*(_write(writers, auth, unfollowed) for auth in auths))
            await asyncio.sleep(0.5)
    unfollowed_posts = [(done - started) * 1000 for started, done in unfollowed.values()]
    gc.collect()
    await asyncio.sleep(1.0)
    rss_before, uss_before = _memory(worker)

    streams = Streams()
    streams.expected = users * args.per_user
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(60.0, read=None)
    async with (
        httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as readers,
        httpx.AsyncClient(base_url=base, timeout=60) as writers,
    ):
        print(f"bench: opening {streams.expected} streams", file=sys.stderr)
        opened_at = time.perf_counter()
        tasks = []
        for auth in auths:
            for _ in range(args.per_user):
                tasks.append(asyncio.create_task(streams.read(readers, auth)))
                await asyncio.sleep(0)
        try:
            await asyncio.wait_for(streams.all_open.wait(), timeout=300)
        except TimeoutError:
            raise SystemExit(
                f"bench: only {streams.opened} streams opened; errors: {streams.errors[:5]}"
            ) from None
        open_seconds = time.perf_counter() - opened_at
        await asyncio.sleep(2.0)  # let the worker settle before reading its memory
        rss_after, uss_after = _memory(worker)

        print(f"bench: {args.writes} writes, one after the other", file=sys.stderr)
        rng = random.Random(1)  # noqa: S311 - picks users, not secrets
        sequential: Sent = {}
        for _ in range(args.writes):
            await _write(writers, rng.choice(auths), sequential)
            await asyncio.sleep(0.02)
        print(f"bench: {args.burst} bursts of one write per user", file=sys.stderr)
        bursts: Sent = {}
        for _ in range(args.burst):
            await asyncio.gather(*(_write(writers, auth, bursts) for auth in auths))
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # the last arrivals
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    return {
        "streams": streams.expected,
        "users": users,
        "open_seconds": open_seconds,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "uss_before": uss_before,
        "uss_after": uss_after,
        "rss_per_stream": (rss_after - rss_before) / streams.expected,
        "uss_per_stream": (uss_after - uss_before) / streams.expected,
        "sequential": _figures(streams, sequential, args.per_user),
        "burst": _figures(streams, bursts, args.per_user),
        "burst_unfollowed": {
            "writes": len(unfollowed),
            "post_p50_ms": _quantile(unfollowed_posts, 0.50),
            "post_p99_ms": _quantile(unfollowed_posts, 0.99),
        },
        "errors": streams.errors[:10],
    }


def render(result: dict[str, Any]) -> str:
    kib = 1024
    rows = [
        [
            f"streams open on one worker ({result['users']} users)",
            f"{result['streams']:,}",
            f"opened in {result['open_seconds']:.1f} s",
            "",
        ],
        [
            "worker RSS before, after",
            f"{result['rss_before'] / kib / kib:.1f} MiB",
            f"{result['rss_after'] / kib / kib:.1f} MiB",
            "",
        ],
        [
            "memory per stream (RSS; USS)",
            f"{result['rss_per_stream'] / kib:.1f} KiB",
            f"{result['uss_per_stream'] / kib:.1f} KiB",
            "yes" if result["rss_per_stream"] < 20 * kib else "NO",
        ],
    ]
    for name in ("sequential", "burst"):
        part = result[name]
        rows += [
            [
                f"fan-out, {name} writes: {part['writes']} writes, {part['deliveries']:,} arrivals,"
                f" {part['missing']} missing",
                f"p50 {part['p50_ms']:.1f} ms",
                f"p99 {part['p99_ms']:.1f} ms (max {part['max_ms']:.0f})",
                "",
            ],
            [
                "  the same, from each write's 2xx response",
                f"p50 {part['from_commit_p50_ms']:.1f} ms",
                f"p99 {part['from_commit_p99_ms']:.1f} ms (max {part['from_commit_max_ms']:.0f})",
                "yes" if part["from_commit_p99_ms"] < 100 and part["missing"] == 0 else "NO",
            ],
            [
                "  the POSTs' own round trips",
                f"p50 {part['post_p50_ms']:.1f} ms",
                f"p99 {part['post_p99_ms']:.1f} ms",
                "",
            ],
        ]
    alone = result["burst_unfollowed"]
    rows.append(
        [
            "  the same bursts' POSTs before any stream opened (no NOTIFY)",
            f"p50 {alone['post_p50_ms']:.1f} ms",
            f"p99 {alone['post_p99_ms']:.1f} ms",
            "",
        ]
    )
    return table(["figure", "value", "", "goal met"], rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=positive, default=1000, help="streams to open")
    parser.add_argument("--per-user", type=positive, default=10, help="streams per user")
    parser.add_argument("--writes", type=positive, default=200, help="sequential writes")
    parser.add_argument("--burst", type=positive, default=5, help="rounds of one write per user")
    parser.add_argument("--database-url", help="an empty scratch database (default: embedded)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()[0]
    database = (
        external_database(args.database_url)
        if args.database_url
        else embedded_database("engage-bench-stream-")
    )
    with database as url, tempfile.TemporaryDirectory(prefix="engage-bench-serve-") as scratch:
        asyncio.run(upgrade(url))
        with serving(url, args.per_user, Path(scratch) / "serve.log") as (base, worker):
            result = asyncio.run(measure(base, worker, args))
    print(
        f"engage-suite stream bench: {os.cpu_count()} CPUs, Python {sys.version.split()[0]},"
        f" 1 worker; load average {load:.2f} at start"
    )
    print(render(result))
    if result["errors"]:
        print(f"stream errors: {result['errors']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
