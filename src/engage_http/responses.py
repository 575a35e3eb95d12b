"""JSON responses encoded once, with decimals as exact JSON numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Response
from litestar.datastructures import Cookie
from litestar.enums import MediaType

from engage_http.dto import encode


def json(
    body: object,
    *,
    status: int = 200,
    cookies: Sequence[Cookie] = (),
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    content = body if isinstance(body, bytes) else encode(body)
    return Response(
        content=content,
        status_code=status,
        media_type=MediaType.JSON,
        cookies=list(cookies),
        headers=headers,
    )


def empty(*, cookies: Sequence[Cookie] = ()) -> Response[Any]:
    return Response(content=b"", status_code=204, cookies=list(cookies))
