"""PostgreSQL's own ceiling for a request's statements: ``pgbench`` (C, no HTTP, no
Python) sends the session check and the read's page or the single write's INSERT
as engage-suite does, in one pipeline ended by one Sync, prepared, from as many
clients as wrk has connections. No request that runs those statements can go
faster on the same machine, so a goal above this ceiling cannot be met by the
request's own code."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import psycopg
from attrs import frozen

from engage_adapters.embedded_pg import embedded_bin_dir

from .measures import Context, Cpu, cpu_seconds

_CHECK = "SELECT * FROM engage_session_check('{session}', '{user}', now());"
# The statements of engage_adapters/postgres/metrics.py, PostgresMetricRepository:
STATEMENTS = {
    "read": (
        "SELECT id, metric_type, metric_value, recorded_at FROM engagement_metrics"
        " WHERE user_id = '{user}' ORDER BY recorded_at DESC, id DESC LIMIT 51;"
    ),
    "write": (
        "INSERT INTO engagement_metrics (user_id, metric_type, metric_value, recorded_at)"
        " SELECT owner, 'page_view', 1.5, now() FROM engage_lock_metric_writes('{user}') AS owner"
        " RETURNING id;"
    ),
}
_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)$", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms$", re.MULTILINE)
_SESSIONS = 64


@frozen(kw_only=True)
class StatementCeiling:
    """pgbench's transactions per second and PostgreSQL's CPU per transaction."""

    rate: float
    latency_ms: float
    cpu: Cpu


def statement_ceiling(ctx: Context, kind: str) -> StatementCeiling:
    """``STATEMENTS[kind]`` after the session check, for live sessions of the run's
    users (one script each, picked at random per transaction): a ``--warmup`` run,
    then a timed one of ``--duration`` seconds. PostgreSQL's CPU is read from the
    timed run's own backends, between a second after it starts and a second
    before it ends."""
    scripts = _scripts(ctx, kind)
    if ctx.args.warmup > 0:
        _pgbench(ctx, scripts, ctx.args.warmup).communicate()
    seconds = max(3, round(ctx.args.duration))
    run = _pgbench(ctx, scripts, seconds)
    time.sleep(1.0)
    backends = ctx.postmaster.children() if ctx.postmaster is not None else []
    began, before = time.perf_counter(), cpu_seconds(backends)
    time.sleep(seconds - 2.0)
    busy, window = cpu_seconds(backends) - before, time.perf_counter() - began
    output, errors = run.communicate(timeout=seconds + 120)
    tps, latency = _TPS.search(output), _LATENCY.search(output)
    if run.returncode != 0 or tps is None or latency is None:
        raise SystemExit(f"bench: pgbench failed: {output}{errors}")
    rate = float(tps[1])
    return StatementCeiling(
        rate=rate, latency_ms=float(latency[1]), cpu=Cpu(0.0, busy / (rate * window) * 1e6)
    )


def _scripts(ctx: Context, kind: str) -> list[Path]:
    with psycopg.connect(ctx.url) as conn:
        live = conn.execute(
            "SELECT id, user_id FROM sessions WHERE ended_at IS NULL AND expires_at > now()"
            " ORDER BY created_at DESC LIMIT %s",
            [_SESSIONS],
        ).fetchall()
    if not live:
        raise SystemExit("bench: no live session for pgbench")
    folder = ctx.root / f"pgbench-{kind}"
    folder.mkdir(exist_ok=True)
    scripts = []
    for n, (session, user) in enumerate(live):
        script = folder / f"{n}.sql"
        check = _CHECK.format(session=session, user=user)
        statement = STATEMENTS[kind].format(user=user)
        script.write_text(f"\\startpipeline\n{check}\n{statement}\n\\endpipeline\n")
        scripts.append(script)
    return scripts


def _pgbench(ctx: Context, scripts: list[Path], seconds: float) -> subprocess.Popen[str]:
    argv = [str(embedded_bin_dir() / "pgbench"), "-n", "-M", "prepared"]
    argv += ["-c", str(ctx.args.connections), "-j", str(ctx.args.threads)]
    argv += ["-T", str(max(1, round(seconds)))]
    for script in scripts:
        argv += ["-f", str(script)]
    return subprocess.Popen(  # noqa: S603 - the embedded pgbench, our own scripts
        [*argv, ctx.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
