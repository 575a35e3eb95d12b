"""HEAD on every GET (RFC 9110, 9.3.2): the GET's status and headers, no body; not on
the live stream, whose GET never ends."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

# Headers that differ between two answers to the same request.
_PER_ANSWER = {"date", "x-request-id", "set-cookie", "etag", "last-modified"}


@pytest.fixture
async def ada(api: Any) -> dict[str, str]:
    auth: dict[str, str] = await api.new_user("ada@example.com")
    return auth


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/readyz",
        "/schema",
        "/schema/openapi.json",
        "/api/auth/me",
        "/api/dashboard/metrics",
        "/api/dashboard/metrics?limit=0",  # a 400 too
        "/api/dashboard/summary?bucket=day&tz=UTC",
        "/api/keys",
        "/",
        "/no/such/page",
    ],
)
async def test_head_answers_what_get_does_without_the_body(
    client: httpx.AsyncClient, ada: dict[str, str], path: str
) -> None:
    await client.post(
        "/api/dashboard/metrics", json={"metric_type": "views", "metric_value": 1}, headers=ada
    )

    await client.get("/healthz")  # the csrftoken cookie: neither answer below sets it
    got = await client.get(path, headers=ada)
    headed = await client.head(path, headers=ada)

    assert headed.status_code == got.status_code
    assert headed.content == b""

    def kept(response: httpx.Response) -> dict[str, str]:
        return {k: v for k, v in response.headers.items() if k not in _PER_ANSWER}

    assert kept(headed) == kept(got)  # Content-Length included: the GET's


async def test_head_of_the_live_stream_is_405_and_options_says_so(
    client: httpx.AsyncClient, ada: dict[str, str]
) -> None:
    headed = await client.head("/api/dashboard/stream", headers=ada)
    stream_options = await client.options("/api/dashboard/stream")
    metrics_options = await client.options("/api/dashboard/metrics")

    assert headed.status_code == 405
    assert "HEAD" not in headed.headers["allow"]
    assert headed.headers.get_list("allow") == stream_options.headers.get_list("allow")
    assert "HEAD" not in stream_options.headers["allow"]
    assert "HEAD" in metrics_options.headers["allow"].split(", ")
    refused = await client.put("/api/dashboard/metrics")
    assert "HEAD" in refused.headers["allow"].split(", ")  # a 405 names it too
