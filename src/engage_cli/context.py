"""Running a command's work against the services of the composition root."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from engage_adapters.bootstrap import Services, build_services
from engage_adapters.settings import load_settings
from engage_cli.errors import reported_errors

T = TypeVar("T")


def with_services(work: Callable[[Services], Awaitable[T]]) -> T:
    """Build the services from ENGAGE_* settings (migrating the schema if
    needed), run ``work``, close everything; errors become one line and exit 1."""

    async def main() -> T:
        async with build_services(load_settings(), upgrade=True) as services:
            return await work(services)

    with reported_errors():
        return asyncio.run(main())
    raise AssertionError("unreachable")  # pragma: no cover - reported_errors exits
