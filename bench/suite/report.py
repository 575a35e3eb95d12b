"""The report: the figures as table rows against their ceilings and goals, the lines
around the table, and the same as JSON (``--json``)."""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import asdict, frozen
from common import environment, table

from .data import BCRYPT_ROUNDS, LoadedData
from .load import Load
from .measures import BATCH, Cpu, EngageFigures
from .profile import PROFILED, profile_parts, profile_table
from .statements import StatementCeiling

# The goals (issue 17's, which keep issue 7's for logins, the storm, summaries and
# memory): each figure's threshold, most as a share of its ceiling.
GOAL_LOGINS = 0.85  # of the bcrypt ceiling
GOAL_READS = 0.12  # of the bare-handler ceiling
GOAL_READS_OF_FLOOR = 0.80  # of the floor: Litestar and the read's queries alone
GOAL_WRITES = 0.12  # of the bare-handler ceiling
GOAL_BATCH = 0.08  # rows/s, of the raw copy's
GOAL_STORM_KEEP = 0.80  # reads keep this share of their throughput during logins
GOAL_STORM_P99_MS = 50.0
GOAL_BACKFILL = 0.90  # of a \copy into engagement_metrics itself
GOAL_SUMMARY_P50_MS = 25.0
GOAL_RSS_MIB = 120.0
GOAL_STREAM_P99_MS = 100.0  # a new metric on every subscribed stream
GOAL_STREAM_KIB = 20.0  # memory per open stream


@frozen(kw_only=True)
class Results:
    """Everything one run of the suite found."""

    args: argparse.Namespace
    postgres_version: str
    load_average: float  # over the last minute, at the start
    data: LoadedData
    raw_copy_rate: float  # rows/s; NaN without a backfill
    table_copy_rate: float  # rows/s of a \copy into engagement_metrics; NaN without
    engage: EngageFigures
    statements: dict[str, StatementCeiling]  # the read's and the write's, from pgbench
    servers: dict[str, dict[str, float]] | None  # granian and uvicorn (--compare-uvicorn)
    backfill_rate: float | None  # rows/s; None without a backfill
    stream: dict[str, Any] | None  # bench/stream.py's figures; None if skipped or failed
    notes: list[str]


@frozen(kw_only=True)
class Row:
    """One line of the table."""

    name: str
    value: float
    unit: str
    ceiling: float | None = None
    ceiling_name: str = ""
    goal: str = ""
    met: bool | None = None
    load: Load | None = None
    cpu: Cpu | None = None

    @property
    def ratio(self) -> float | None:
        if not self.ceiling or math.isnan(self.ceiling):
            return None
        return self.value / self.ceiling


# --- the rows -------------------------------------------------------------------------


def rows_of(results: Results) -> list[Row]:
    """The table, ceilings first, in the order of bench/README.md."""
    rows = _ceiling_rows(results) + _engage_rows(results) + _feature_rows(results)
    rows += _storm_rows(results)
    rows.append(_memory_row(results.engage))
    if results.backfill_rate is not None:
        rows += _backfill_rows(results)
    if results.stream is not None:
        rows += _stream_rows(results.stream)
    return rows


def _ceiling_rows(results: Results) -> list[Row]:
    engage = results.engage
    return [
        Row(
            name=f"ceiling: bare Litestar on granian, {results.args.workers} workers",
            value=engage.bare_rate,
            unit="req/s",
            load=engage.bare_runs[0].load,
            cpu=engage.bare_cpu,
        ),
        Row(
            name=f"ceiling: bcrypt cost {BCRYPT_ROUNDS}, {engage.logins.bcrypt_threads} threads",
            value=engage.logins.bcrypt_rate,
            unit="/s",
        ),
        Row(
            name="ceiling: the read's statements alone (pgbench)",
            value=results.statements["read"].rate,
            unit="/s",
            ceiling=engage.bare_rate,
            ceiling_name="bare",
            cpu=results.statements["read"].cpu,
        ),
        Row(
            name="ceiling: the single write's statements alone (pgbench)",
            value=results.statements["write"].rate,
            unit="/s",
            ceiling=engage.bare_rate,
            ceiling_name="bare",
            cpu=results.statements["write"].cpu,
        ),
        Row(
            name="ceiling: raw \\copy of the backfill CSV",
            value=results.raw_copy_rate,
            unit="rows/s",
        ),
        Row(
            name="ceiling: \\copy of it into engagement_metrics",
            value=results.table_copy_rate,
            unit="rows/s",
        ),
    ]


def _engage_rows(results: Results) -> list[Row]:
    engage, bare_rate = results.engage, results.engage.bare_rate
    logins, reads, writes = engage.logins, engage.reads, engage.single_writes
    summaries = engage.summaries
    return [
        Row(
            name="logins (POST /api/auth/token)",
            value=logins.per_second,
            unit="/s",
            ceiling=logins.bcrypt_rate,
            ceiling_name="bcrypt",
            goal=f">= {GOAL_LOGINS:.0%}",
            met=logins.load.clean and logins.per_second >= GOAL_LOGINS * logins.bcrypt_rate,
            load=logins.load,
        ),
        Row(
            name="authenticated reads, first page",
            value=reads.load.rate,
            unit="req/s",
            ceiling=bare_rate,
            ceiling_name="bare",
            goal=f">= {GOAL_READS:.0%}",
            met=reads.load.clean and reads.load.rate >= GOAL_READS * bare_rate,
            load=reads.load,
            cpu=reads.cpu,
        ),
        Row(
            name="  floor: Litestar + the read's 2 queries, no more",
            value=engage.read_floor.load.rate,
            unit="req/s",
            ceiling=bare_rate,
            ceiling_name="bare",
            load=engage.read_floor.load,
            cpu=engage.read_floor.cpu,
        ),
        Row(
            name="  floor: the same 2 in one round trip",
            value=engage.read_floor_one_trip.load.rate,
            unit="req/s",
            ceiling=bare_rate,
            ceiling_name="bare",
            load=engage.read_floor_one_trip.load,
            cpu=engage.read_floor_one_trip.cpu,
        ),
        Row(
            name="  reads against the one-round-trip floor",
            value=reads.load.rate,
            unit="req/s",
            ceiling=engage.read_floor_one_trip.load.rate,
            ceiling_name="floor",
            goal=f">= {GOAL_READS_OF_FLOOR:.0%}",
            met=reads.load.clean
            and reads.load.rate >= GOAL_READS_OF_FLOOR * engage.read_floor_one_trip.load.rate,
        ),
        Row(
            name="single writes",
            value=writes.load.rate,
            unit="req/s",
            ceiling=bare_rate,
            ceiling_name="bare",
            goal=f">= {GOAL_WRITES:.0%}",
            met=writes.load.clean and writes.load.rate >= GOAL_WRITES * bare_rate,
            load=writes.load,
            cpu=writes.cpu,
        ),
        Row(
            name="  single writes against their statements alone",
            value=writes.load.rate,
            unit="req/s",
            ceiling=results.statements["write"].rate,
            ceiling_name="pgbench",
        ),
        Row(
            name=f"batch writes ({BATCH} per request), rows",
            value=engage.batch_writes.load.rate * BATCH,
            unit="rows/s",
            ceiling=results.raw_copy_rate,
            ceiling_name="raw copy",
            goal=f">= {GOAL_BATCH:.0%}",
            met=engage.batch_writes.load.clean
            and engage.batch_writes.load.rate * BATCH >= GOAL_BATCH * results.raw_copy_rate,
            load=engage.batch_writes.load,
            cpu=engage.batch_writes.cpu,
        ),
        Row(
            name="  the same against the \\copy into engagement_metrics",
            value=engage.batch_writes.load.rate * BATCH,
            unit="rows/s",
            ceiling=results.table_copy_rate,
            ceiling_name="table copy",
        ),
        Row(
            name=f"summaries, a year by day ({results.args.summary_connections} conns), p50",
            value=summaries.load.p50_ms,
            unit="ms",
            goal=f"< {GOAL_SUMMARY_P50_MS:g} ms",
            met=summaries.load.clean and summaries.load.p50_ms < GOAL_SUMMARY_P50_MS,
            load=summaries.load,
            cpu=summaries.cpu,
        ),
    ]


def _storm_rows(results: Results) -> list[Row]:
    connections = results.args.storm_connections
    alone = results.engage.storm.reads_alone
    during = results.engage.storm.reads_during_logins.load
    return [
        Row(
            name=f"reads alone ({connections} conns)",
            value=alone.load.rate,
            unit="req/s",
            load=alone.load,
            cpu=alone.cpu,
        ),
        Row(
            name=f"reads during a login storm ({connections} conns)",
            value=during.rate,
            unit="req/s",
            ceiling=alone.load.rate,
            ceiling_name="alone",
            goal=f">= {GOAL_STORM_KEEP:.0%}",
            met=during.clean and during.rate >= GOAL_STORM_KEEP * alone.load.rate,
            load=during,
        ),
        Row(
            name="reads during a login storm, p99",
            value=during.p99_ms,
            unit="ms",
            goal=f"< {GOAL_STORM_P99_MS:g} ms",
            met=during.clean and during.p99_ms < GOAL_STORM_P99_MS,
        ),
    ]


def _memory_row(engage: EngageFigures) -> Row:
    rss = engage.memory.rss_bytes
    worst = max(rss.values()) / 2**20 if rss else float("nan")
    return Row(
        name=f"worker RSS after the run (largest of {len(rss)})",
        value=worst,
        unit="MiB",
        goal=f"< {GOAL_RSS_MIB:g} MiB",
        met=bool(rss) and worst < GOAL_RSS_MIB,
    )


def _backfill_rows(results: Results) -> list[Row]:
    rows, rate = results.args.backfill_rows, results.backfill_rate or 0.0
    return [
        Row(
            name=f"engage metrics backfill, {rows:,} rows",
            value=rate,
            unit="rows/s",
            ceiling=results.table_copy_rate,
            ceiling_name="table copy",
            goal=f">= {GOAL_BACKFILL:.0%}",
            met=rate >= GOAL_BACKFILL * results.table_copy_rate,
        ),
        Row(
            name="  the same against the raw copy (context)",
            value=rate,
            unit="rows/s",
            ceiling=results.raw_copy_rate,
            ceiling_name="raw copy",
        ),
    ]


def _feature_rows(results: Results) -> list[Row]:
    """The newer features: key writes, static pages, what the reads wrote."""
    engage, bare_rate = results.engage, results.engage.bare_rate
    effects = engage.read_effects
    return [
        Row(
            name="single writes with an API key",
            value=engage.key_writes.load.rate,
            unit="req/s",
            ceiling=engage.single_writes.load.rate,
            ceiling_name="bearer",
            load=engage.key_writes.load,
            cpu=engage.key_writes.cpu,
        ),
        Row(
            name="static pages (the dashboard and its assets)",
            value=engage.static.load.rate,
            unit="req/s",
            ceiling=bare_rate,
            ceiling_name="bare",
            load=engage.static.load,
            cpu=engage.static.cpu,
        ),
        Row(
            name=f"last_seen_at writes by the reads ({effects.sessions} sessions)",
            value=effects.session_updates,
            unit="rows",
            goal=f"<= {effects.allowed_updates}",
            met=effects.session_updates <= effects.allowed_updates,
        ),
        Row(
            name="activity entries written by the reads",
            value=effects.activity_rows,
            unit="rows",
            goal="0",
            met=effects.activity_rows == 0,
        ),
    ]


def _stream_rows(stream: dict[str, Any]) -> list[Row]:
    """bench/stream.py's figures: memory per stream and the fan-out's tail."""
    rows = [
        Row(
            name=f"live streams: memory per stream ({stream['streams']:,} on one worker)",
            value=stream["rss_per_stream"] / 1024,
            unit="KiB",
            goal=f"< {GOAL_STREAM_KIB:g} KiB",
            met=stream["rss_per_stream"] / 1024 < GOAL_STREAM_KIB,
        )
    ]
    for kind in ("sequential", "burst"):
        figures = stream.get(kind)
        if not figures:
            continue
        # The goal counts from the write's commit (its 2xx): the delivery's own
        # time. From before the POST it also holds the write path's queueing.
        rows += [
            Row(
                name=f"live streams: fan-out p99 from the commit, {kind} writes"
                f" ({figures['missing']} missing)",
                value=figures["from_commit_p99_ms"],
                unit="ms",
                goal=f"< {GOAL_STREAM_P99_MS:g} ms",
                met=figures["missing"] == 0 and figures["from_commit_p99_ms"] < GOAL_STREAM_P99_MS,
            ),
            Row(
                name="  the same from before the POST (its queueing included)",
                value=figures["p99_ms"],
                unit="ms",
            ),
        ]
    return rows


# --- the text -------------------------------------------------------------------------


def _number(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(rows: Sequence[Row]) -> str:
    header: tuple[str, ...] = ("figure", "value", "p50 ms", "p99 ms", "CPU us/req")
    header += ("ceiling", "ratio", "goal", "met")
    lines = []
    for row in rows:
        lines.append(
            (
                row.name,
                f"{_number(row.value)} {row.unit}",
                f"{row.load.p50_ms:.1f}" if row.load else "",
                f"{row.load.p99_ms:.1f}" if row.load else "",
                str(row.cpu) if row.cpu is not None else "",
                f"{_number(row.ceiling)} ({row.ceiling_name})"
                if row.ceiling is not None and row.ratio is not None
                else "",
                f"{row.ratio:.1%}" if row.ratio is not None else "",
                row.goal,
                "" if row.met is None else ("yes" if row.met else "NO"),
            )
        )
    return table(header, lines)


def print_report(results: Results, rows: Sequence[Row], *, started: float) -> None:
    """The run's setting, the table, and what the table has no column for."""
    args, data = results.args, results.data
    print(
        f"engage-suite bench: {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" PostgreSQL {results.postgres_version}{' + Redis' if args.redis else ''},"
        f" {args.workers} workers; wrk {args.threads} threads,"
        f" {args.duration:g} s runs after {args.warmup:g} s of warm-up;"
        f" load average {results.load_average:.2f} at start"
    )
    print(
        f"data: {data.users:,} users, {data.metrics:,} metrics loaded by COPY in"
        f" {data.copy_seconds:.1f} s (VACUUM ANALYZE {data.vacuum_seconds:.1f} s)"
    )
    print()
    print(render(rows))
    print()
    _print_memory_and_ceilings(results.engage)
    if results.servers:
        _print_servers(results.servers, args.workers)
    if args.profile and args.profile_format == "raw":
        _print_profile_parts(results.engage, args.profile)
    for note in results.notes:
        print(f"note: {note}")
    missed = [r.name for r in rows if r.met is False]
    print("all goals met" if not missed else f"goals missed: {'; '.join(missed)}")
    for line in _out_of_reach(results):
        print(f"out of reach in this run: {line}")
    print(f"total {time.perf_counter() - started:.0f} s")


def _out_of_reach(results: Results) -> list[str]:
    """The goals above what PostgreSQL alone does with the same statements or rows:
    no code of the request's can meet those on this machine."""
    bare, lines = results.engage.bare_rate, []
    goals = (("read", GOAL_READS, "reads"), ("write", GOAL_WRITES, "single writes"))
    for kind, goal, name in goals:
        alone = results.statements[kind].rate
        if alone < goal * bare:
            lines.append(
                f"{name}: {goal:.0%} of bare is {goal * bare:,.0f}/s; their statements alone,"
                f" from pgbench, reach {alone:,.0f}/s ({alone / bare:.1%} of bare)"
            )
    if results.table_copy_rate < GOAL_BATCH * results.raw_copy_rate:  # False if NaN
        lines.append(
            f"batch writes: {GOAL_BATCH:.0%} of the raw copy is"
            f" {GOAL_BATCH * results.raw_copy_rate:,.0f} rows/s; psql's \\copy into"
            f" engagement_metrics itself reaches {results.table_copy_rate:,.0f} rows/s"
        )
    return lines


def _print_memory_and_ceilings(engage: EngageFigures) -> None:
    rss, uss = engage.memory.rss_bytes, engage.memory.uss_bytes
    print(
        "worker memory after the run: "
        + ", ".join(
            f"pid {pid} RSS {size / 2**20:.0f} MiB (USS {uss.get(pid, 0) / 2**20:.0f} MiB)"
            for pid, size in rss.items()
        )
    )
    print(
        "ceilings, each the mean of two runs: bare "
        + " and ".join(f"{run.load.rate:,.0f}" for run in engage.bare_runs)
        + " req/s, bcrypt "
        + " and ".join(f"{r:.2f}" for r in engage.logins.bcrypt_runs)
        + f"/s; logins while the reads ran: {engage.storm.logins_per_second:.2f}/s"
    )


def _print_profile_parts(engage: EngageFigures, directory: Path) -> None:
    """The workers' CPU per request of each profiled run, by part (``profile.py``)."""
    runs = {
        "bare": engage.bare_runs[0],
        "floor, 1 trip": engage.read_floor_one_trip,
        "reads": engage.reads,
        "writes": engage.single_writes,
        "key writes": engage.key_writes,
        "batch of 100": engage.batch_writes,
    }
    columns = {
        name: (profile_parts(directory, label), run.cpu.app_us)
        for (name, run), label in zip(runs.items(), PROFILED, strict=True)
    }
    print()
    print("where the workers' CPU went: us per request of each run, by py-spy's samples")
    print("\n".join(profile_table(columns)))
    print()


def _print_servers(servers: dict[str, dict[str, float]], workers: int) -> None:
    g, u = servers["granian"], servers["uvicorn"]
    print(
        f"granian vs uvicorn, {workers} workers: bare {g['bare_per_s']:,.0f} vs"
        f" {u['bare_per_s']:,.0f} req/s ({g['bare_cpu_us']:,.0f} vs {u['bare_cpu_us']:,.0f}"
        f" us CPU/req); authenticated reads {g['reads_per_s']:,.0f} vs"
        f" {u['reads_per_s']:,.0f} req/s ({g['reads_cpu_us']:,.0f} vs"
        f" {u['reads_cpu_us']:,.0f} us CPU/req); single writes {g['writes_per_s']:,.0f} vs"
        f" {u['writes_per_s']:,.0f} req/s ({g['writes_cpu_us']:,.0f} vs"
        f" {u['writes_cpu_us']:,.0f} us CPU/req)"
    )


# --- the JSON -------------------------------------------------------------------------


def json_document(results: Results, rows: Sequence[Row]) -> dict[str, Any]:
    """Every figure of the run (``--json``), the options and the machine with them."""
    engage = results.engage
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(results.args).items()},
        "environment": environment(results.postgres_version, results.load_average),
        "rows": [_json_row(r) for r in rows],
        "workers_rss_bytes": {str(k): v for k, v in engage.memory.rss_bytes.items()},
        "workers_uss_bytes": {str(k): v for k, v in engage.memory.uss_bytes.items()},
        "bare_runs_per_s": [run.load.rate for run in engage.bare_runs],
        "bcrypt_runs_per_s": list(engage.logins.bcrypt_runs),
        "logins_during_storm_per_s": engage.storm.logins_per_second,
        "servers": results.servers,
        "load": asdict(results.data),
        "notes": results.notes,
    }


def _json_row(row: Row) -> dict[str, Any]:
    return {
        "name": row.name,
        "value": row.value,
        "unit": row.unit,
        "ceiling": row.ceiling,
        "ceiling_name": row.ceiling_name,
        "ratio": row.ratio,
        "goal": row.goal,
        "met": row.met,
        "cpu_us_per_request": asdict(row.cpu) if row.cpu else None,
        "load": asdict(row.load) if row.load else None,
    }
