"""The load: wrk, the Lua scripts it runs, and what one run of it reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from attrs import define, frozen

from . import progress
from .data import PASSWORD

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

# The end of a script whose init() built ``requests``: each thread cycles through
# them from its own place.
LUA_CYCLE = r"""
  n = id * 7919
end
function request()
  n = n + 1
  return requests[n % #requests + 1]
end
"""

# GET with a bearer token per request, cycling through the tokens in args[1].
LUA_BEARER_GET = (
    r"""
local requests, n
function init(args)
  requests = {}
  for token in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("GET", nil, {["Authorization"] = "Bearer " .. token})
  end"""
    + LUA_CYCLE
)

# POST a JSON body (the file args[2]) with a bearer token per request.
LUA_BEARER_POST = (
    r"""
local requests, n
function init(args)
  local handle = io.open(args[2], "rb")
  local body = handle:read("*a")
  handle:close()
  requests = {}
  for token in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", nil, {
      ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
  end"""
    + LUA_CYCLE
)

# POST /api/auth/token for users 1..args[1] in turn (each thread its own stride).
LUA_LOGIN = r"""
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

# Added to LUA_LOGIN: keeps the first 500 access tokens, for the reads and writes.
LUA_COLLECT_TOKENS = r"""
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


@frozen(kw_only=True)
class Traffic:
    """What wrk sends: a path on the server, the Lua script, and the script's arguments."""

    path: str
    script: Path
    args: tuple[str, ...] = ()


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
    """The run's summary and the tokens it collected, from the lines ``_LUA_DONE`` wrote."""
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
        progress("wrk not found; installing it with apt-get (Debian package 'wrk')")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)  # noqa: S607
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "bench: wrk is needed (the HTTP load generator): apt-get install wrk,"
        " brew install wrk, or pass --wrk PATH"
    )
