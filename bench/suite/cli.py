"""The command line, and the run from an empty temporary directory to the report."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import psycopg
from common import positive, stop_embedded

from engage_adapters.embedded_pg import start_embedded
from engage_adapters.postgres.migrate import upgrade

from . import progress
from .bulk_loads import (
    copy_into_table,
    raw_copy,
    run_backfill,
    settle_tables,
    write_backfill_csv,
)
from .data import HISTORY, load_data
from .features import measure_stream
from .load import Wrk, find_wrk
from .measures import Context, compare_uvicorn, measure_engage
from .report import Results, json_document, print_report, rows_of
from .servers import engage_env, postmaster_of, start_redis
from .statements import STATEMENTS, statement_ceiling


class TimeLimit(Exception):
    pass


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="engage-suite over HTTP against the machine's limits, in one run."
    )
    parser.add_argument("--users", type=positive, default=10_000)
    parser.add_argument("--metrics", type=positive, default=1_000_000)
    parser.add_argument("--backfill-rows", type=int, default=1_000_000, help="0: skip it")
    parser.add_argument("--workers", type=positive, default=2, help="server worker processes")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per timed run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument("--login-duration", type=float, default=10.0)
    parser.add_argument("--bcrypt-duration", type=float, default=5.0)
    parser.add_argument("--connections", type=positive, default=32, help="for throughput runs")
    parser.add_argument("--login-connections", type=positive, default=8)
    parser.add_argument("--summary-connections", type=positive, default=4)
    parser.add_argument("--batch-connections", type=positive, default=8)
    parser.add_argument("--storm-connections", type=positive, default=8)
    parser.add_argument("--threads", type=positive, default=2, help="wrk threads")
    parser.add_argument("--tokens", type=positive, default=64, help="users the reads spread over")
    parser.add_argument(
        "--streams", type=int, default=1000, help="live streams for bench/stream.py (0: skip it)"
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--wrk", help="path of wrk (default: from PATH)")
    parser.add_argument("--redis", action="store_true", help="a valkey-server as ENGAGE_REDIS_URL")
    parser.add_argument("--compare-uvicorn", action="store_true")
    parser.add_argument(
        "--profile", type=Path, help="py-spy flame graphs of the reads and single writes, here"
    )
    parser.add_argument(
        "--profile-format",
        choices=["flamegraph", "raw", "speedscope"],
        default="flamegraph",
        help="py-spy's output: an SVG flame graph, collapsed stacks (text), or speedscope JSON",
    )
    parser.add_argument("--time-limit", type=float, default=570.0, help="stop after this (s)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.tokens > args.users:
        parser.error("--tokens must not exceed --users")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """0 when every run was clean, 1 with notes of what went wrong, 3 when stopped."""
    args = parse_args(argv)
    started = time.perf_counter()
    wrk_path = find_wrk(args.wrk)
    _stop_on_signals(args.time_limit)
    load_average = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="engage-bench-suite-"))
    try:
        results = run_suite(args, root=root, wrk_path=wrk_path, load_average=load_average)
    except TimeLimit as exc:
        elapsed = time.perf_counter() - started
        print(
            f"bench: {exc} after {elapsed:.0f} s; servers stopped, files removed", file=sys.stderr
        )
        return 3
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

    rows = rows_of(results)
    print_report(results, rows, started=started)
    if args.json:
        document = json_document(results, rows)
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return 0 if not results.notes else 1


def _stop_on_signals(time_limit: float) -> None:
    """SIGTERM, and the alarm after ``time_limit`` seconds, unwind the run as TimeLimit."""

    def stop(signum: int, _: FrameType | None) -> None:
        raise TimeLimit("time limit reached" if signum == signal.SIGALRM else "stopped")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, time_limit)


def run_suite(
    args: argparse.Namespace, *, root: Path, wrk_path: str, load_average: float
) -> Results:
    """The data, then every measurement; ``root`` and every server are gone after."""
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        url = start_embedded(root / "server")
        stack.callback(stop_embedded, root / "server" / "postgres")
        progress(f"embedded PostgreSQL in {root}")
        asyncio.run(upgrade(url))
        now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        progress(f"loading {args.users:,} users and {args.metrics:,} metrics")
        data = load_data(url, users=args.users, metrics=args.metrics, now=now, seed=args.seed)
        csv = root / "backfill.csv"
        raw_rate = table_rate = float("nan")
        if args.backfill_rows:
            raw_rate = _raw_copy_of_backfill(args, url, csv, root, now)
        env = engage_env(root, url)
        if args.redis:
            env["ENGAGE_REDIS_URL"] = start_redis(root, stack)
            progress("valkey-server started: ENGAGE_REDIS_URL is set")
        ctx = Context(
            args=args,
            root=root,
            url=url,
            wrk=Wrk(wrk_path, root, args.threads),
            env=env,
            postmaster=postmaster_of(root / "server" / "postgres"),
            notes=[],
        )
        progress("engage serve and the bare handler")
        engage = measure_engage(ctx, now)
        progress("the read's and the single write's statements alone, from pgbench")
        statements = {kind: statement_ceiling(ctx, kind) for kind in STATEMENTS}
        for kind, ceiling in statements.items():
            progress(f"  {kind}: {ceiling.rate:,.0f}/s, PostgreSQL CPU {ceiling.cpu.db_us:,.0f} us")
        servers = None
        if args.compare_uvicorn:
            progress("granian against uvicorn")
            servers = compare_uvicorn(ctx, engage.traffic)
        backfill_rate = None
        if args.backfill_rows:
            # The goal's ceiling and the backfill see the same table: the one the
            # writes above left, vacuumed, so neither meets their autovacuum.
            settle_tables(url)
            progress("\\copy of the CSV into engagement_metrics (rolled back)")
            table_rate = copy_into_table(url, csv, root)
            progress(f"  \\copy into engagement_metrics: {table_rate:,.0f} rows/s")
            progress(f"engage metrics backfill of {args.backfill_rows:,} rows")
            backfill_rate = run_backfill(url, csv, ctx.env, args.backfill_rows, root)
            progress(f"  backfill: {backfill_rate:,.0f} rows/s")
        stream = measure_stream(root, args.streams) if args.streams else None
        return Results(
            args=args,
            postgres_version=_server_version(url),
            load_average=load_average,
            data=data,
            raw_copy_rate=raw_rate,
            table_copy_rate=table_rate,
            engage=engage,
            statements=statements,
            servers=servers,
            backfill_rate=backfill_rate,
            stream=stream,
            notes=ctx.notes,
        )


def _raw_copy_of_backfill(
    args: argparse.Namespace, url: str, csv: Path, root: Path, now: datetime
) -> float:
    """Writes the backfill CSV (the two years before the loaded ones), then the ceiling:
    its raw ``\\copy``, rows/s."""
    progress(f"writing {args.backfill_rows:,} rows of backfill CSV")
    write_backfill_csv(
        csv, rows=args.backfill_rows, users=args.users, end=now - HISTORY, seed=args.seed
    )
    progress("raw \\copy of the CSV")
    rate = raw_copy(url, csv, root)
    progress(f"  raw \\copy: {rate:,.0f} rows/s")
    return rate


def _server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        return str((conn.execute("SHOW server_version").fetchone() or ["?"])[0])
