"""The newer features' share of the budget: writes with an API key, the dashboard's
static assets, what reads write behind the scenes (``last_seen_at``, the activity
log), and the live stream's fan-out (``bench/stream.py`` in a subprocess)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from attrs import frozen

from . import progress
from .load import LUA_CYCLE, Traffic, Wrk

WEB_ROOT = Path(__file__).resolve().parents[2] / "src" / "engage_http" / "web"
STREAM_SCRIPT = Path(__file__).resolve().parents[1] / "stream.py"

# GET each path of args[1] in turn, gzip accepted, as a browser loads the pages.
LUA_PATHS_GET = (
    r"""
local requests, n
function init(args)
  requests = {}
  for path in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("GET", path, {["Accept-Encoding"] = "gzip"})
  end"""
    + LUA_CYCLE
)


def create_api_keys(base: str, tokens: Sequence[str]) -> list[str]:
    """A ``metrics:write`` key for each user whose access token is given (``POST
    /api/keys``), four requests at a time."""

    def one(token: str) -> str:
        body = json.dumps({"name": "bench", "scopes": ["metrics:write"]}).encode()
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            base + "/api/keys",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            key: str = json.load(answer)["key"]
            return key

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, tokens))


def static_traffic(base: str, wrk: Wrk, root: Path) -> Traffic:
    """The dashboard's page and every asset it can load, under the versioned prefix
    the page names (read from ``GET /``)."""
    with urllib.request.urlopen(base + "/", timeout=30) as answer:  # noqa: S310
        page = answer.read().decode()
    found = re.search(r'src="([^"]+)/js/main\.js"', page)
    if found is None:
        raise SystemExit("bench: GET / names no /js/main.js")
    prefix = found.group(1)
    assets = sorted(
        path.relative_to(WEB_ROOT).as_posix()
        for path in WEB_ROOT.rglob("*")
        if path.is_file() and path.name != "index.html"
    )
    paths = root / "static-paths.txt"
    paths.write_text("\n".join(["/", *(f"{prefix}/{a}" for a in assets)]) + "\n")
    return Traffic(path="/", script=wrk.script("static", LUA_PATHS_GET), args=(str(paths),))


@frozen
class TableCounts:
    """Rows of ``activity`` and row updates of ``sessions`` (cumulative statistics)."""

    activity_rows: int
    session_updates: int

    @classmethod
    def read(cls, url: str) -> TableCounts:
        with psycopg.connect(url, autocommit=True) as conn:
            activity = conn.execute("SELECT count(*) FROM activity").fetchone()
            updates = conn.execute(
                "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'sessions'"
            ).fetchone()
        return cls(
            activity_rows=int(activity[0]) if activity else 0,
            session_updates=int(updates[0]) if updates else 0,
        )


@frozen(kw_only=True)
class ReadSideEffects:
    """What the reads wrote: activity entries (none expected) and ``last_seen_at``
    updates (at most one per session a minute), for ``sessions`` sessions over
    ``seconds`` seconds of reads."""

    activity_rows: int
    session_updates: int
    sessions: int
    seconds: float

    @classmethod
    def between(
        cls, before: TableCounts, after: TableCounts, *, sessions: int, seconds: float
    ) -> ReadSideEffects:
        return cls(
            activity_rows=after.activity_rows - before.activity_rows,
            session_updates=after.session_updates - before.session_updates,
            sessions=sessions,
            seconds=seconds,
        )

    @property
    def allowed_updates(self) -> int:
        """One per session per started minute of reads."""
        return self.sessions * (int(self.seconds // 60) + 1)


def measure_stream(root: Path, streams: int) -> dict[str, Any] | None:
    """``bench/stream.py`` with ``streams`` streams on its own server and database:
    its JSON figures, or None (with the reason printed) if it failed."""
    out = root / "stream.json"
    progress(f"the live stream: bench/stream.py --streams {streams}")
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(STREAM_SCRIPT), "--streams", str(streams), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        progress(f"  bench/stream.py failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return None
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures
