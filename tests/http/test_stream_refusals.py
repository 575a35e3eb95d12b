"""A stream request the stream cannot start from is a 400 problem, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

STREAM = "/api/dashboard/stream"


@pytest.fixture
def storage() -> str:
    return "memory"


# Digits to str.isdigit that int() refuses (superscript two, circled one): no metric id
# the server sent (the unit tests refuse the non-ASCII digits int() reads, too).
@pytest.mark.parametrize("value", ["\u00b2", "\u2460"])
async def test_a_starting_id_of_other_digits_is_a_400_problem(
    client: httpx.AsyncClient, api: Any, expect_problem: Callable[..., Any], value: str
) -> None:
    auth = await api.new_user("ada@example.com")

    response = await client.get(STREAM, params={"after": value}, headers=auth)

    expect_problem(response, 400, fields=["after"])
