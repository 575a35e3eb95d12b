"""/metrics counts login outcomes, so operators can alert on credential stuffing."""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.testing import AsyncTestClient


def _count(text: str, flavour: str, outcome: str) -> float:
    pattern = rf'engage_logins_total\{{flavour="{flavour}",outcome="{outcome}"\}} ([0-9.e+]+)'
    match = re.search(pattern, text)
    return float(match[1]) if match else 0.0


async def test_login_outcomes_are_counted_by_flavour(client: AsyncTestClient[Litestar]) -> None:
    before = (await client.get("/metrics")).text
    credentials = {"email": "ada@example.com", "password": "password-123"}
    assert (await client.post("/api/auth/signup", json=credentials)).status_code == 201
    assert (await client.post("/api/auth/login", json=credentials)).status_code == 200
    wrong = {**credentials, "password": "not-the-password"}
    assert (await client.post("/api/auth/login", json=wrong)).status_code == 401
    assert (await client.post("/api/auth/token", json=wrong)).status_code == 401
    after = (await client.get("/metrics")).text
    for flavour, outcome in (("browser", "success"), ("browser", "refused"), ("token", "refused")):
        assert _count(after, flavour, outcome) == _count(before, flavour, outcome) + 1


async def test_the_database_pool_is_reported(client: AsyncTestClient[Litestar]) -> None:
    text = (await client.get("/metrics")).text
    match = re.search(r'engage_db_pool_connections\{state="open"\} ([0-9.e+]+)', text)
    assert match is not None
    assert float(match[1]) >= 1
