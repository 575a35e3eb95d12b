"""Traffic for a running `engage serve`: an account's bearer header, bad logins on
new connections, and a load run of clients whose every answer and latency is kept."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Sequence

import httpx
from attrs import define, field

PASSWORD = "correct horse battery staple"
# One client's round: a read of the account, a write, and the two dashboard reads.
ROUND = (
    ("GET", "/api/auth/me", None),
    ("POST", "/api/dashboard/metrics", {"metric_type": "load", "metric_value": 1}),
    ("GET", "/api/dashboard/metrics", None),
    ("GET", "/api/dashboard/summary", None),
)


async def bearer(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    """Sign ``email`` up if need be; the bearer header of a new session of theirs."""
    credentials = {"email": email, "password": PASSWORD}
    signup = await client.post("/api/auth/signup", json=credentials)
    assert signup.status_code in (201, 409), signup.text  # 409: they have an account
    response = await client.post("/api/auth/token", json=credentials)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def bad_logins(bases: Sequence[str], email: str, count: int) -> list[httpx.Response]:
    """``count`` logins of ``email`` with a wrong password, taking ``bases`` in turn, each
    on a new connection (so that a server's workers take turns as the kernel pleases)."""
    wrong = {"email": email, "password": "not the password"}
    responses = []
    for base in itertools.islice(itertools.cycle(bases), count):
        async with httpx.AsyncClient(base_url=base) as client:
            responses.append(await client.post("/api/auth/login", json=wrong))
    return responses


@define
class LoadRun:
    """Clients that each go round ``ROUND`` until the run stops; ``outcomes`` counts
    each status code or transport error by name, ``latencies`` holds each answer's."""

    outcomes: Counter[str] = field(factory=Counter)
    latencies: list[float] = field(factory=list)
    _stopping: asyncio.Event = field(factory=asyncio.Event)
    _clients: list[asyncio.Task[None]] = field(factory=list)

    def start(self, base: str, auth: dict[str, str]) -> None:
        """One more client, on ``base`` with ``auth``."""
        self._clients.append(asyncio.create_task(self._client(base, auth)))

    async def stop(self) -> None:
        """Let every client finish its request, then return."""
        self._stopping.set()
        await asyncio.gather(*self._clients)

    async def _client(self, base: str, auth: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=10) as client:
            while not self._stopping.is_set():
                for method, path, body in ROUND:
                    started = time.perf_counter()
                    try:
                        response = await client.request(method, path, json=body)
                    except httpx.TransportError as exc:
                        self.outcomes[type(exc).__name__] += 1
                        continue
                    self.latencies.append(time.perf_counter() - started)
                    self.outcomes[str(response.status_code)] += 1

    def figures(self) -> str:
        """The run in one line: requests by outcome, and latency percentiles."""
        latencies = sorted(self.latencies)
        return (
            f"{sum(self.outcomes.values())} requests {dict(self.outcomes)}, "
            f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms"
        )
