"""Storage benchmark: dashboard reads over a million engagement metrics.

What it measures
----------------
The four reads the dashboard does most, through the real code path (a
``psycopg_pool`` pool from ``engage_adapters.postgres.pool.open_pool`` and
``PostgresMetricRepository``), each for a random user per sample:

* ``page: newest 50``     -- ``page()`` with ``MetricPageQuery(limit=50)``: the
  first screen of a user's metrics (index ``engagement_metrics_user_newest``).
* ``page: deep keyset``   -- ``page()`` with ``after=Position(...)`` taken at the
  900th newest metric (90 % into the user's history): proves keyset paging
  costs the same deep down as at the top, unlike OFFSET.
* ``summary: week/hour``  -- ``summarize()`` for the last 7 days, hourly buckets,
  in Europe/Berlin: 15-minute rollups plus the raw rows at the ragged edges.
* ``summary: year/day``   -- ``summarize()`` for the last 365 days, daily buckets,
  in Europe/Berlin: the largest rollup scan a dashboard asks for.

The same four are then measured through ``engage_core``'s ``MetricsService``
(``list`` with and without a signed cursor, ``summary``), which adds input
validation, the cursor codec and the one-extra-row probe for ``next_cursor``.

Goals (issue): on a 2-core machine, page p50 < 2 ms and summary p50 < 25 ms,
with 1,000,000 metrics for 1,000 users. Timings are wall-clock per call
(``time.perf_counter_ns``) as an HTTP handler would see them: pool checkout,
round trips, the commit on checkin, and building the domain objects.

The data
--------
Users come from one ``INSERT ... SELECT FROM unnest(...)``. Metrics are loaded
with binary ``COPY`` in a few chunks, so the statement-level rollup trigger runs
once per chunk. Each user gets the same number of metrics, of 8 types, spread
over the past two years; rows are written in ``recorded_at`` order, interleaved
across users, the way a live system receives them (so one user's rows are
scattered over the heap, as they are in production). Then ``VACUUM (ANALYZE)``
leaves the tables as autovacuum would in steady state.

Where it runs
-------------
Without ``--database-url`` it starts its own embedded PostgreSQL in a fresh
temporary directory (never the user's data directory), applies the migrations,
and removes it all at the end. With ``--database-url`` it applies the
migrations, refuses a database that already holds users, and empties the
tables again at the end (unless ``--keep-data``).

Usage::

    python bench/storage.py [--users 1000] [--metrics 1000000] [--samples 200]
                            [--database-url URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from attrs import asdict, frozen
from common import embedded_database, environment, external_database, positive, table
from psycopg_pool import AsyncConnectionPool

from engage_adapters.clock import SystemClock
from engage_adapters.postgres.metrics import PostgresMetricRepository
from engage_adapters.postgres.migrate import upgrade
from engage_adapters.postgres.pool import open_pool
from engage_core.queries import (
    Bucket,
    CursorCodec,
    MetricPageQuery,
    Position,
    Series,
    SummaryQuery,
)
from engage_core.services.metrics import MetricsService

PAGE_GOAL_MS = 2.0
SUMMARY_GOAL_MS = 25.0
PAGE_SIZE = 50
DEEP_FRACTION = 0.9  # the deep keyset page starts after the 900th newest of 1000
HISTORY = timedelta(days=730)
TZ = ZoneInfo("Europe/Berlin")
CURSOR_USERS = 100  # users whose deep cursor is obtained by paging through the service
MAX_SERVICE_PAGE = 500
WEEK = "7 days hourly, Berlin"
YEAR = "365 days daily, Berlin"

# (metric type, relative frequency, largest value in cents): a plausible mix.
METRIC_TYPES: tuple[tuple[str, int, int], ...] = (
    ("page_view", 40, 100),
    ("click", 20, 100),
    ("session.duration_s", 10, 360_000),
    ("scroll.depth", 10, 10_000),
    ("video:play", 8, 100),
    ("api-call", 6, 100),
    ("purchase.amount", 4, 50_000),
    ("signup.step", 2, 500),
)


# --- the data set ---------------------------------------------------------------


@frozen(kw_only=True)
class DataSpec:
    users: int
    metrics: int
    seed: int
    chunk: int
    now: datetime

    @property
    def per_user(self) -> int:
        """The fewest metrics any user has."""
        return self.metrics // self.users

    @property
    def deep_rank(self) -> int:
        """The newest-first rank of the deep keyset position (900 of 1000)."""
        return max(1, int(self.per_user * DEEP_FRACTION))


@frozen(kw_only=True)
class LoadReport:
    users: int
    metrics: int
    chunks: int
    users_seconds: float
    copy_seconds: float
    vacuum_analyze_seconds: float
    rows_per_second: float
    rollup_rows: int
    table_bytes: dict[str, int]


def _user_ids(spec: DataSpec, rng: random.Random) -> list[uuid.UUID]:
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(spec.users)]


def _metric_rows(
    spec: DataSpec, user_ids: Sequence[uuid.UUID], rng: random.Random
) -> Iterator[tuple[uuid.UUID, str, Decimal, datetime]]:
    """Every metric, oldest first: exactly ``metrics // users`` (or one more) per
    user, owners shuffled, timestamps evenly spread with jitter over ``HISTORY``."""
    owners = [
        user
        for index, user in enumerate(user_ids)
        for _ in range(spec.per_user + (1 if index < spec.metrics % spec.users else 0))
    ]
    rng.shuffle(owners)
    names = [name for name, _, _ in METRIC_TYPES]
    weights = [weight for _, weight, _ in METRIC_TYPES]
    ceilings = {name: ceiling for name, _, ceiling in METRIC_TYPES}
    kinds = rng.choices(names, weights, k=spec.metrics)
    # Values in cents, as Decimals; a small palette per type keeps generation cheap.
    palettes = {
        name: [Decimal(rng.randrange(ceiling + 1)).scaleb(-2) for _ in range(512)]
        for name, ceiling in ceilings.items()
    }
    start = spec.now - HISTORY
    step_us = HISTORY / timedelta(microseconds=1) / spec.metrics
    for index, (owner, kind) in enumerate(zip(owners, kinds, strict=True)):
        offset = int((index + rng.random()) * step_us)
        yield owner, kind, rng.choice(palettes[kind]), start + timedelta(microseconds=offset)


def load(url: str, spec: DataSpec) -> tuple[list[uuid.UUID], LoadReport]:
    rng = random.Random(spec.seed)  # noqa: S311 - reproducible test data, not secrets
    user_ids = _user_ids(spec, rng)
    with psycopg.connect(url) as conn:
        began = time.perf_counter()
        conn.execute(
            "INSERT INTO users (id, email, email_key, password_hash)"
            " SELECT u, e, e, '!bench: no login'"
            "   FROM unnest(%s::uuid[]) WITH ORDINALITY AS t(u, n),"
            "        LATERAL (SELECT format('bench-%%s@example.com', n)) AS m(e)",
            [user_ids],
        )
        conn.commit()
        users_seconds = time.perf_counter() - began

        began = time.perf_counter()
        rows = _metric_rows(spec, user_ids, rng)
        loaded = chunks = 0
        while loaded < spec.metrics:
            size = min(spec.chunk, spec.metrics - loaded)
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY engagement_metrics (user_id, metric_type, metric_value, recorded_at)"
                    " FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["uuid", "varchar", "numeric", "timestamptz"])
                for _ in range(size):
                    copy.write_row(next(rows))
            conn.commit()  # the rollup trigger has run once, for this whole chunk
            loaded += size
            chunks += 1
            _progress(f"  loaded {loaded:>10,} / {spec.metrics:,} metrics")
        copy_seconds = time.perf_counter() - began

    with psycopg.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) users, engagement_metrics, metric_rollups")
        vacuum_seconds = time.perf_counter() - began
        rollups = conn.execute("SELECT count(*) FROM metric_rollups").fetchone()
        sizes = conn.execute(
            "SELECT relname::text, pg_total_relation_size(oid) FROM pg_class"
            " WHERE relname IN ('users', 'engagement_metrics', 'metric_rollups')"
        ).fetchall()
    return user_ids, LoadReport(
        users=spec.users,
        metrics=spec.metrics,
        chunks=chunks,
        users_seconds=users_seconds,
        copy_seconds=copy_seconds,
        vacuum_analyze_seconds=vacuum_seconds,
        rows_per_second=spec.metrics / copy_seconds,
        rollup_rows=rollups[0] if rollups else 0,
        table_bytes=dict(sizes),
    )


def deep_positions(url: str, rank: int) -> dict[uuid.UUID, Position]:
    """Each user's ``rank``-th newest metric, as a keyset position."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT user_id, recorded_at, id FROM ("
            "  SELECT user_id, recorded_at, id, row_number() OVER"
            "         (PARTITION BY user_id ORDER BY recorded_at DESC, id DESC) AS rank"
            "    FROM engagement_metrics) AS ranked"
            " WHERE rank = %s",
            [rank],
        ).fetchall()
    return {user: Position(at, metric_id) for user, at, metric_id in rows}


# --- measuring ------------------------------------------------------------------


Call = Callable[[uuid.UUID], Awaitable[int]]  # one request for a user; returns rows got


@frozen
class Benchmark:
    name: str
    goal_ms: float
    call: Call
    users: Sequence[uuid.UUID]


@frozen(kw_only=True)
class Result:
    name: str
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_rows: float
    goal_p50_ms: float

    @property
    def passed(self) -> bool:
        return self.p50_ms < self.goal_p50_ms


async def measure(bench: Benchmark, *, samples: int, warmup: int, rng: random.Random) -> Result:
    for _ in range(warmup):
        await bench.call(rng.choice(bench.users))
    timings: list[int] = []
    rows = 0
    for _ in range(samples):
        user = rng.choice(bench.users)
        began = time.perf_counter_ns()
        rows += await bench.call(user)
        timings.append(time.perf_counter_ns() - began)
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return Result(
        name=bench.name,
        count=samples,
        p50_ms=cuts[49] / 1e6,
        p95_ms=cuts[94] / 1e6,
        p99_ms=cuts[98] / 1e6,
        mean_rows=rows / samples,
        goal_p50_ms=bench.goal_ms,
    )


def _points(series: Sequence[Series]) -> int:
    return sum(len(s.points) for s in series)


async def _service_cursors(
    service: MetricsService, users: Sequence[uuid.UUID], rank: int
) -> dict[uuid.UUID, str]:
    """A cursor just past each user's ``rank``-th newest metric, got the way a
    client gets one: by paging through ``MetricsService.list``."""
    cursors: dict[uuid.UUID, str] = {}
    for user in users:
        cursor: str | None = None
        remaining = rank
        while remaining:
            size = min(remaining, MAX_SERVICE_PAGE)
            page = await service.list(user, limit=size, cursor=cursor)
            cursor = page.next_cursor
            remaining -= size
        if cursor is None:
            raise RuntimeError(f"user {user} has no metric past rank {rank}")
        cursors[user] = cursor
    return cursors


async def run_benchmarks(
    url: str,
    spec: DataSpec,
    user_ids: Sequence[uuid.UUID],
    positions: dict[uuid.UUID, Position],
    *,
    samples: int,
    warmup: int,
) -> list[Result]:
    rng = random.Random(spec.seed + 1)  # noqa: S311 - picks users, not secrets
    week = SummaryQuery(
        bucket=Bucket.HOUR, tz=TZ, since=spec.now - timedelta(days=7), until=spec.now
    )
    year = SummaryQuery(
        bucket=Bucket.DAY, tz=TZ, since=spec.now - timedelta(days=365), until=spec.now
    )
    # One connection: the bench is sequential, and it keeps every sample on the
    # same (warmed, prepared-statement) connection, as a busy worker's are.
    pool: AsyncConnectionPool = await open_pool(url, min_size=1, max_size=1)
    try:
        repo = PostgresMetricRepository(pool)
        service = MetricsService(
            metrics=repo, clock=SystemClock(), cursors=CursorCodec(os.urandom(32))
        )
        cursor_users = rng.sample(list(user_ids), min(CURSOR_USERS, len(user_ids)))
        cursors = await _service_cursors(service, cursor_users, spec.deep_rank)

        # Both paths must agree on what "the deep page" is before we time them.
        probe = cursor_users[0]
        by_repo = await repo.page(probe, MetricPageQuery(limit=PAGE_SIZE, after=positions[probe]))
        by_service = await service.list(probe, cursor=cursors[probe])
        if [m.id for m in by_repo] != [m.id for m in by_service.items]:
            raise RuntimeError("the repository and the service disagree on the deep page")

        async def repo_newest(user: uuid.UUID) -> int:
            return len(await repo.page(user, MetricPageQuery(limit=PAGE_SIZE)))

        async def repo_deep(user: uuid.UUID) -> int:
            query = MetricPageQuery(limit=PAGE_SIZE, after=positions[user])
            return len(await repo.page(user, query))

        async def repo_week(user: uuid.UUID) -> int:
            return _points(await repo.summarize(user, week))

        async def repo_year(user: uuid.UUID) -> int:
            return _points(await repo.summarize(user, year))

        async def service_newest(user: uuid.UUID) -> int:
            return len((await service.list(user, limit=PAGE_SIZE)).items)

        async def service_deep(user: uuid.UUID) -> int:
            return len((await service.list(user, limit=PAGE_SIZE, cursor=cursors[user])).items)

        async def service_week(user: uuid.UUID) -> int:
            summary = await service.summary(
                user, bucket="hour", tz=TZ.key, since=week.since, until=week.until
            )
            return _points(summary.series)

        async def service_year(user: uuid.UUID) -> int:
            summary = await service.summary(
                user, bucket="day", tz=TZ.key, since=year.since, until=year.until
            )
            return _points(summary.series)

        everyone = list(user_ids)
        deep = f"after #{spec.deep_rank}"
        benches = [
            Benchmark("repo    page: newest 50", PAGE_GOAL_MS, repo_newest, everyone),
            Benchmark(f"repo    page: keyset {deep}", PAGE_GOAL_MS, repo_deep, everyone),
            Benchmark(f"repo    summary: {WEEK}", SUMMARY_GOAL_MS, repo_week, everyone),
            Benchmark(f"repo    summary: {YEAR}", SUMMARY_GOAL_MS, repo_year, everyone),
            Benchmark("service list: newest 50", PAGE_GOAL_MS, service_newest, everyone),
            Benchmark(f"service list: cursor {deep}", PAGE_GOAL_MS, service_deep, cursor_users),
            Benchmark(f"service summary: {WEEK}", SUMMARY_GOAL_MS, service_week, everyone),
            Benchmark(f"service summary: {YEAR}", SUMMARY_GOAL_MS, service_year, everyone),
        ]
        results = []
        for bench in benches:
            _progress(f"  measuring {bench.name}")
            results.append(await measure(bench, samples=samples, warmup=warmup, rng=rng))
        return results
    finally:
        await pool.close()


# --- where the database comes from ----------------------------------------------


# --- output ---------------------------------------------------------------------


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def render(results: Sequence[Result]) -> str:
    header = ("benchmark", "n", "p50 ms", "p95 ms", "p99 ms", "goal p50", "result", "rows/call")
    lines = [
        (
            r.name,
            str(r.count),
            f"{r.p50_ms:.3f}",
            f"{r.p95_ms:.3f}",
            f"{r.p99_ms:.3f}",
            f"< {r.goal_p50_ms:g} ms",
            "PASS" if r.passed else "MISS",
            f"{r.mean_rows:.1f}",
        )
        for r in results
    ]
    return table(header, lines)


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


# --- main -----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load N metrics for M users, then time dashboard reads (p50/p95/p99)."
    )
    parser.add_argument("--users", type=positive, default=1_000)
    parser.add_argument("--metrics", type=positive, default=1_000_000)
    parser.add_argument("--samples", type=positive, default=200, help="timed calls per read")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls per read first")
    parser.add_argument("--chunk", type=positive, default=250_000, help="rows per COPY")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--database-url", help="an empty, scratch database (default: a temporary embedded one)"
    )
    parser.add_argument("--keep-data", action="store_true", help="with --database-url: keep rows")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.metrics < args.users:
        parser.error("--metrics must be at least --users")
    if args.samples < 2:
        parser.error("--samples must be at least 2 (percentiles)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    spec = DataSpec(
        users=args.users,
        metrics=args.metrics,
        seed=args.seed,
        chunk=args.chunk,
        now=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1),
    )
    started = time.perf_counter()
    busy_before = os.getloadavg()[0]  # other work on the machine skews the tails
    database = (
        external_database(args.database_url, keep=args.keep_data)
        if args.database_url
        else embedded_database()
    )
    with database as url:
        if not args.database_url:
            _progress("bench: embedded PostgreSQL started in a temporary directory")
            asyncio.run(upgrade(url))
        version = _server_version(url)
        _progress(f"bench: loading {spec.metrics:,} metrics for {spec.users:,} users")
        user_ids, report = load(url, spec)
        positions = deep_positions(url, spec.deep_rank)
        _progress(f"bench: {args.warmup} warm-up + {args.samples} timed calls per read")
        busy_measuring = os.getloadavg()[0]
        results = asyncio.run(
            run_benchmarks(url, spec, user_ids, positions, samples=args.samples, warmup=args.warmup)
        )

    sizes = ", ".join(f"{name} {_mib(size)}" for name, size in sorted(report.table_bytes.items()))
    print(
        f"PostgreSQL {version}, Python {platform.python_version()}, psycopg {psycopg.__version__},"
        f" {os.cpu_count()} CPUs; load average {busy_before:.2f} at start,"
        f" {busy_measuring:.2f} when measuring began"
    )
    print(
        f"load: {report.users:,} users in {report.users_seconds:.2f} s;"
        f" {report.metrics:,} metrics by COPY in {report.chunks} chunk(s) in"
        f" {report.copy_seconds:.1f} s ({report.rows_per_second:,.0f} rows/s, rollup trigger"
        f" included); VACUUM ANALYZE {report.vacuum_analyze_seconds:.1f} s"
    )
    print(f"data: {report.rollup_rows:,} rollup rows; {sizes}")
    print()
    print(render(results))
    print()
    missed = [r.name for r in results if not r.passed]
    print("all goals met" if not missed else f"goals missed: {', '.join(missed)}")
    print(f"total {time.perf_counter() - started:.0f} s")

    if args.json:
        document: dict[str, Any] = {
            "config": {
                "users": spec.users,
                "metrics": spec.metrics,
                "samples": args.samples,
                "warmup": args.warmup,
                "chunk": spec.chunk,
                "seed": spec.seed,
                "deep_rank": spec.deep_rank,
                "tz": TZ.key,
                "embedded": not args.database_url,
            },
            "environment": {
                **environment(version, busy_before),
                "load_average_measuring": busy_measuring,
            },
            "load": asdict(report),
            "results": [{**asdict(r), "passed": r.passed} for r in results],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
