"""Each measurement: bcrypt's ceiling and the logins, the reads and writes against the
bare handler, the read's floor, the login storm, the workers' memory, and granian
against uvicorn. Every HTTP figure is a warm-up and a timed wrk run, with the server's
CPU time per request."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime
from importlib.util import find_spec
from pathlib import Path

import bcrypt
import psutil
import psycopg
from attrs import define, frozen
from common import METRIC_TYPES

from . import progress, servers
from .data import BCRYPT_ROUNDS, HISTORY, PASSWORD, email_of
from .features import ReadSideEffects, TableCounts, create_api_keys, static_traffic
from .load import (
    LUA_BEARER_GET,
    LUA_BEARER_POST,
    LUA_COLLECT_TOKENS,
    LUA_LOGIN,
    Load,
    Traffic,
    Wrk,
    parse_wrk,
)
from .servers import Server, running

TZ = "Europe/Berlin"
BATCH = 100  # metrics per batch write
_PROFILE_SUFFIXES = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}


@define
class Context:
    """What every measurement needs, and the notes of what went wrong in them."""

    args: argparse.Namespace
    root: Path  # the scratch directory: logs, scripts, request bodies
    url: str  # the embedded PostgreSQL
    wrk: Wrk
    env: dict[str, str]  # of every engage process
    postmaster: psutil.Process | None
    notes: list[str]

    def engage_server(self, name: str, *, uvicorn: bool = False) -> Server:
        return servers.engage_server(
            name, root=self.root, env=self.env, workers=self.args.workers, uvicorn=uvicorn
        )

    def bare_server(self, name: str, *, uvicorn: bool = False, module: str = "bare_app") -> Server:
        return servers.bare_server(
            name,
            root=self.root,
            workers=self.args.workers,
            database_url=self.url,
            uvicorn=uvicorn,
            module=module,
        )


@frozen
class Cpu:
    """Server CPU time per request, in microseconds: the workers' and PostgreSQL's."""

    app_us: float
    db_us: float | None = None  # None: PostgreSQL not involved

    @property
    def total_us(self) -> float:
        return self.app_us + (self.db_us or 0.0)

    def __str__(self) -> str:
        if self.db_us is None:
            return f"{self.app_us:,.0f}"
        return f"{self.app_us:,.0f} + {self.db_us:,.0f}"


@frozen(kw_only=True)
class Measurement:
    """A timed wrk run and the server's CPU per request during it."""

    load: Load
    cpu: Cpu


@frozen(kw_only=True)
class Logins:
    """Logins flat out, between two runs of bcrypt's ceiling."""

    bcrypt_runs: tuple[float, float]  # cost-12 checks per second, before and after
    bcrypt_threads: int
    load: Load
    per_second: float  # counted in the database
    tokens: tuple[str, ...]  # access tokens the logins answered with

    @property
    def bcrypt_rate(self) -> float:
        return sum(self.bcrypt_runs) / 2


@frozen(kw_only=True)
class Storm:
    """Reads alone, then while logins run flat out."""

    reads_alone: Measurement
    reads_during_logins: Measurement
    logins_per_second: float


@frozen(kw_only=True)
class WorkerMemory:
    """Each ``engage serve`` worker's memory after the load, by pid."""

    rss_bytes: dict[int, int]
    uss_bytes: dict[int, int]


@frozen(kw_only=True)
class EngageTraffic:
    """The requests of the run; tokens, scripts and bodies are files in the scratch directory."""

    bare: Traffic  # GET / on the bare apps
    summaries: Traffic
    reads: Traffic
    single_writes: Traffic
    key_writes: Traffic  # the single write, authenticated by an API key
    batch_writes: Traffic
    static: Traffic  # the dashboard's page and assets


@frozen(kw_only=True)
class EngageFigures:
    """Everything measured with ``engage serve`` and the bare handler side by side."""

    logins: Logins
    summaries: Measurement
    bare_runs: tuple[Measurement, Measurement]  # before the reads, after the writes
    reads: Measurement
    read_floor: Measurement  # the read's two queries alone, one round trip each
    read_floor_one_trip: Measurement  # the same two in one round trip (a pipeline)
    single_writes: Measurement
    key_writes: Measurement
    batch_writes: Measurement
    static: Measurement
    read_effects: ReadSideEffects
    storm: Storm
    memory: WorkerMemory
    traffic: EngageTraffic

    @property
    def bare_rate(self) -> float:
        return sum(run.load.rate for run in self.bare_runs) / 2

    @property
    def bare_cpu(self) -> Cpu:
        return Cpu(sum(run.cpu.app_us for run in self.bare_runs) / 2)


# --- one run --------------------------------------------------------------------------


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def measure(
    ctx: Context,
    server: Server,
    traffic: Traffic,
    *,
    connections: int,
    label: str,
    database: bool = True,
) -> Measurement:
    """A warm-up, then the timed run: the load and the server's CPU per request
    (its workers, and PostgreSQL's backends when ``database``). A run with
    failed requests is reported, not hidden."""
    url = server.base + traffic.path
    if ctx.args.warmup > 0:
        ctx.wrk.run(
            url,
            traffic.script,
            connections=connections,
            duration=ctx.args.warmup,
            args=traffic.args,
        )
    workers = server.workers()
    backends: list[psutil.Process] = []
    if database and ctx.postmaster is not None:
        with suppress(psutil.Error):
            backends = ctx.postmaster.children()
    app_before, db_before = cpu_seconds(workers), cpu_seconds(backends)
    load, _ = ctx.wrk.run(
        url, traffic.script, connections=connections, duration=ctx.args.duration, args=traffic.args
    )
    per_request = 1e6 / max(load.requests, 1)
    cpu = Cpu(
        app_us=(cpu_seconds(workers) - app_before) * per_request,
        db_us=(cpu_seconds(backends) - db_before) * per_request if database else None,
    )
    progress(
        f"  {label}: {load.rate:,.0f} req/s, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms,"
        f" CPU {cpu} us/request"
        + ("" if load.clean else f"  (errors {load.errors}, non-2xx {load.bad_status})")
    )
    if not load.clean:
        ctx.notes.append(
            f"{label}: {load.errors} socket errors/timeouts and {load.bad_status} non-2xx responses"
        )
    return Measurement(load=load, cpu=cpu)


def measure_profiled(
    ctx: Context,
    server: Server,
    traffic: Traffic,
    *,
    connections: int,
    label: str,
    profile_name: str,
    database: bool = True,
) -> Measurement:
    """``measure`` with py-spy recording every worker meanwhile (``--profile DIR``)."""
    spies = profile_workers(ctx, server, profile_name)
    measured = measure(
        ctx, server, traffic, connections=connections, label=label, database=database
    )
    for spy in spies:
        spy.wait(timeout=60)
    return measured


def profile_workers(ctx: Context, server: Server, label: str) -> list[subprocess.Popen[bytes]]:
    """py-spy on every worker for the coming warm-up and timed run (``--profile DIR``)."""
    if not ctx.args.profile:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        ctx.notes.append("--profile: py-spy not found (pip install py-spy)")
        return []
    ctx.args.profile.mkdir(parents=True, exist_ok=True)
    suffix = _PROFILE_SUFFIXES[ctx.args.profile_format]
    seconds = round(ctx.args.duration + ctx.args.warmup)
    spies = []
    for worker in server.workers():
        out = ctx.args.profile / f"{label}-{worker.pid}.{suffix}"
        spies.append(
            subprocess.Popen(  # noqa: S603
                [
                    spy,
                    "record",
                    "--pid",
                    str(worker.pid),
                    "--duration",
                    str(seconds),
                    "--rate",
                    "250",
                    "--nonblocking",
                    "--format",
                    ctx.args.profile_format,
                    "-o",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return spies


# --- logins ---------------------------------------------------------------------------


def bcrypt_ceiling(duration: float) -> tuple[float, int]:
    """Cost-12 checks per second on one thread per core (what a login costs)."""
    threads = os.cpu_count() or 1
    stored = bcrypt.hashpw(b"x" * 44, bcrypt.gensalt(BCRYPT_ROUNDS))
    stop = time.perf_counter() + duration
    counts = [0] * threads

    def spin(slot: int) -> None:
        while time.perf_counter() < stop:
            bcrypt.checkpw(b"x" * 44, stored)
            counts[slot] += 1

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(spin, range(threads)))
    return sum(counts) / (time.perf_counter() - began), threads


def login_storm(
    ctx: Context,
    server: Server,
    script: Path,
    duration: float,
    *,
    meanwhile: Callable[[], None] | None = None,
) -> tuple[Load, list[str], float]:
    """Logins flat out for ``duration`` seconds after a ramp-up; ``meanwhile`` runs
    during them. Each login takes long (bcrypt queues behind bcrypt), so wrk's own
    count, which drops the requests in flight at either end, would understate the
    rate; it is counted in the database instead (one session per login), over the
    steady part of the run."""
    ramp = 2.0
    storm = ctx.wrk.start(
        server.base + "/api/auth/token",
        script,
        connections=ctx.args.login_connections,
        duration=ramp + duration + 1,
        args=[str(ctx.args.users)],
    )
    try:
        time.sleep(ramp)
        first, began = count_sessions(ctx.url), time.perf_counter()
        if meanwhile is not None:
            meanwhile()
        time.sleep(max(0.0, duration - (time.perf_counter() - began)))
        last, ended = count_sessions(ctx.url), time.perf_counter()
        out, err = storm.communicate(timeout=duration + 60)
    except BaseException:
        storm.kill()
        storm.wait()
        raise
    load, tokens = parse_wrk(out, err, ctx.args.login_connections)
    return load, tokens, (last - first) / (ended - began)


def count_sessions(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM sessions").fetchone()
    return int(row[0]) if row else 0


def login_tokens(base: str, first: int, count: int) -> list[str]:
    """Bearer tokens from real logins of ``count`` users, four at a time."""

    def one(n: int) -> str:
        body = json.dumps({"email": email_of(n), "password": PASSWORD}).encode()
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            base + "/api/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            token: str = json.load(answer)["access_token"]
            return token

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(first, first + count)))


def measure_logins(ctx: Context, engage: Server) -> Logins:
    """bcrypt's ceiling, then logins right after it (the servers are idle meanwhile),
    then bcrypt's ceiling again."""
    args = ctx.args
    bcrypt_before, threads = bcrypt_ceiling(args.bcrypt_duration)
    progress(f"  bcrypt: {bcrypt_before:.2f} hashes/s on {threads} threads")
    script = ctx.wrk.script("login", LUA_LOGIN + LUA_COLLECT_TOKENS)
    load, tokens, per_second = login_storm(ctx, engage, script, args.login_duration)
    progress(f"  logins: {per_second:.2f}/s, p50 {load.p50_ms:.0f} ms")
    time.sleep(1.0)  # the hashes the server still had in hand when wrk left
    bcrypt_after, _ = bcrypt_ceiling(args.bcrypt_duration)
    progress(f"  bcrypt again: {bcrypt_after:.2f} hashes/s")
    if not load.clean:
        ctx.notes.append(f"logins: {load.errors} errors, {load.bad_status} non-2xx responses")
    return Logins(
        bcrypt_runs=(bcrypt_before, bcrypt_after),
        bcrypt_threads=threads,
        load=load,
        per_second=per_second,
        tokens=tuple(tokens),
    )


# --- reads and writes -----------------------------------------------------------------


def engage_traffic(
    ctx: Context, engage: Server, collected: Sequence[str], now: datetime
) -> EngageTraffic:
    """The reads and writes spread over the users who just logged in (topped up if too few)."""
    args = ctx.args
    tokens = list(dict.fromkeys(collected))[: args.tokens]
    if len(tokens) < args.tokens:
        tokens += login_tokens(engage.base, args.users - args.tokens, args.tokens - len(tokens))
    token_file = ctx.root / "tokens.txt"
    token_file.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    key_file = ctx.root / "keys.txt"
    key_file.write_text("\n".join(create_api_keys(engage.base, tokens)) + "\n", encoding="utf-8")
    get_script = ctx.wrk.script("bearer-get", LUA_BEARER_GET)
    post_script = ctx.wrk.script("bearer-post", LUA_BEARER_POST)
    bare_script = ctx.wrk.script("bare", "")
    one = ctx.root / "one.json"
    one.write_text(json.dumps({"metric_type": "page_view", "metric_value": 1.5}))
    many = ctx.root / "batch.json"
    items = [{"metric_type": METRIC_TYPES[i % 8], "metric_value": i / 4} for i in range(BATCH)]
    many.write_text(json.dumps({"items": items}))
    since = urllib.parse.quote((now - HISTORY).isoformat())
    until = urllib.parse.quote(now.isoformat())
    token_args = (str(token_file),)
    return EngageTraffic(
        bare=Traffic(path="/", script=bare_script),
        summaries=Traffic(
            path=f"/api/dashboard/summary?bucket=day&tz={TZ}&since={since}&until={until}",
            script=get_script,
            args=token_args,
        ),
        reads=Traffic(path="/api/dashboard/metrics", script=get_script, args=token_args),
        single_writes=Traffic(
            path="/api/dashboard/metrics", script=post_script, args=(*token_args, str(one))
        ),
        key_writes=Traffic(
            path="/api/dashboard/metrics", script=post_script, args=(str(key_file), str(one))
        ),
        batch_writes=Traffic(
            path="/api/dashboard/metrics/batch", script=post_script, args=(*token_args, str(many))
        ),
        static=static_traffic(engage.base, ctx.wrk, ctx.root),
    )


def traffic_tokens(ctx: Context) -> list[str]:
    """The bearer tokens the reads and writes cycle through."""
    return (ctx.root / "tokens.txt").read_text(encoding="utf-8").split()


def measure_read_floor(
    ctx: Context, traffic: EngageTraffic, *, one_trip: bool = False
) -> Measurement:
    """The read's two queries alone (``servers.TWO_QUERIES_APP``, or in one round trip
    ``ONE_ROUND_TRIP_APP``), on a server of their own; it picks its sessions at start,
    so after the logins."""
    module = "one_round_trip_app" if one_trip else "two_queries_app"
    server = ctx.bare_server(module.replace("_app", "").replace("_", "-"), module=module)
    with running(server, "/") as floor:
        return measure_profiled(
            ctx,
            floor,
            traffic.bare,
            connections=ctx.args.connections,
            label="the read's two queries in one round trip"
            if one_trip
            else "the read's two queries alone",
            profile_name="floor-one-trip" if one_trip else "floor-two-trips",
        )


def measure_storm(ctx: Context, engage: Server, traffic: EngageTraffic) -> Storm:
    """Reads at a moderate load, alone and then while logins run flat out."""
    connections = ctx.args.storm_connections
    alone = measure(ctx, engage, traffic.reads, connections=connections, label="reads alone")
    script = ctx.wrk.script("login-storm", LUA_LOGIN)
    during: list[Measurement] = []

    def reads_meanwhile() -> None:
        during.append(
            measure(
                ctx, engage, traffic.reads, connections=connections, label="reads during logins"
            )
        )

    duration = ctx.args.warmup + ctx.args.duration
    _, _, logins_per_second = login_storm(ctx, engage, script, duration, meanwhile=reads_meanwhile)
    progress(f"  logins during the storm: {logins_per_second:.2f}/s")
    return Storm(
        reads_alone=alone, reads_during_logins=during[0], logins_per_second=logins_per_second
    )


def worker_memory(engage: Server) -> WorkerMemory:
    workers = engage.workers()
    rss = {w.pid: w.memory_info().rss for w in workers}
    uss = {}
    for w in workers:
        with suppress(psutil.Error):
            uss[w.pid] = w.memory_full_info().uss
    return WorkerMemory(rss_bytes=rss, uss_bytes=uss)


def measure_engage(ctx: Context, now: datetime) -> EngageFigures:
    """Everything that needs servers: engage serve and the bare handler, side by side."""
    connections = ctx.args.connections
    with (
        running(ctx.bare_server("bare-granian"), "/") as bare,
        running(ctx.engage_server("engage-granian"), "/readyz") as engage,
    ):
        logins = measure_logins(ctx, engage)
        traffic = engage_traffic(ctx, engage, logins.tokens, now)
        summaries = measure(
            ctx,
            engage,
            traffic.summaries,
            connections=ctx.args.summary_connections,
            label="summaries",
        )
        bare_before = measure_profiled(
            ctx,
            bare,
            traffic.bare,
            connections=connections,
            label="bare handler",
            profile_name="bare",
            database=False,
        )
        counts_before = TableCounts.read(ctx.url)
        reads = measure_profiled(
            ctx, engage, traffic.reads, connections=connections, label="reads", profile_name="reads"
        )
        read_floor = measure_read_floor(ctx, traffic)
        read_floor_one_trip = measure_read_floor(ctx, traffic, one_trip=True)
        # The floor writes nothing, and lets the workers' statistics reach the server.
        read_effects = ReadSideEffects.between(
            counts_before,
            TableCounts.read(ctx.url),
            sessions=len(traffic_tokens(ctx)),
            seconds=ctx.args.warmup + ctx.args.duration,
        )
        single_writes = measure_profiled(
            ctx,
            engage,
            traffic.single_writes,
            connections=connections,
            label="single writes",
            profile_name="writes",
        )
        key_writes = measure_profiled(
            ctx,
            engage,
            traffic.key_writes,
            connections=connections,
            label="writes with a key",
            profile_name="key-writes",
        )
        bare_after = measure(
            ctx,
            bare,
            traffic.bare,
            connections=connections,
            label="bare handler again",
            database=False,
        )
        batch_writes = measure_profiled(
            ctx,
            engage,
            traffic.batch_writes,
            connections=ctx.args.batch_connections,
            label="batch writes",
            profile_name="batch-writes",
        )
        static = measure(
            ctx,
            engage,
            traffic.static,
            connections=connections,
            label="static pages",
            database=False,
        )
        storm = measure_storm(ctx, engage, traffic)
        memory = worker_memory(engage)
    return EngageFigures(
        logins=logins,
        summaries=summaries,
        bare_runs=(bare_before, bare_after),
        reads=reads,
        read_floor=read_floor,
        read_floor_one_trip=read_floor_one_trip,
        single_writes=single_writes,
        key_writes=key_writes,
        batch_writes=batch_writes,
        static=static,
        read_effects=read_effects,
        storm=storm,
        memory=memory,
        traffic=traffic,
    )


# --- granian against uvicorn ----------------------------------------------------------


def compare_uvicorn(ctx: Context, traffic: EngageTraffic) -> dict[str, dict[str, float]] | None:
    """The bare handler, the authenticated read and the single write on granian and
    on uvicorn, same workers, one server after the other (``--compare-uvicorn``)."""
    if find_spec("uvicorn") is None or find_spec("httptools") is None:
        ctx.notes.append("--compare-uvicorn: uvicorn and httptools are needed (the bench extra)")
        return None
    return {
        server_name: _measure_on(ctx, traffic, server_name, uvicorn=uvicorn)
        for server_name, uvicorn in (("granian", False), ("uvicorn", True))
    }


def _measure_on(
    ctx: Context, traffic: EngageTraffic, server_name: str, *, uvicorn: bool
) -> dict[str, float]:
    connections = ctx.args.connections
    with running(ctx.bare_server(f"bare-{server_name}-2", uvicorn=uvicorn), "/") as server:
        bare = measure(
            ctx,
            server,
            traffic.bare,
            connections=connections,
            label=f"bare on {server_name}",
            database=False,
        )
    engage = ctx.engage_server(f"engage-{server_name}-2", uvicorn=uvicorn)
    with running(engage, "/readyz") as server:
        reads = measure(
            ctx, server, traffic.reads, connections=connections, label=f"reads on {server_name}"
        )
        writes = measure(
            ctx,
            server,
            traffic.single_writes,
            connections=connections,
            label=f"single writes on {server_name}",
        )
    return {
        "bare_per_s": bare.load.rate,
        "bare_cpu_us": bare.cpu.app_us,
        "reads_per_s": reads.load.rate,
        "reads_cpu_us": reads.cpu.total_us,
        "writes_per_s": writes.load.rate,
        "writes_cpu_us": writes.cpu.total_us,
    }
