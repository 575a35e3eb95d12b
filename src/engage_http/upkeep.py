"""What each server process does on a schedule: delete what has outlived its
keeping (activity past ENGAGE_ACTIVITY_DAYS, expired login challenges,
rate-limit windows and idempotency keys). Every worker runs it; the deletes are
idempotent, so workers that run it at the same time only repeat each other."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from engage_adapters.bootstrap import Services, stop_task, unavailable_from

log = logging.getLogger("engage.upkeep")
PURGE_EVERY = 3600.0


async def purge_forever(services: Services, *, every: float = PURGE_EVERY) -> None:
    # A random start: workers started together do not purge together.
    await asyncio.sleep(random.uniform(0, every / 60))  # noqa: S311 - not a secret
    while True:
        try:
            purged = await services.purge_expired()
        except Exception as exc:  # a failed round (the database away) waits for the next one
            if (outage := unavailable_from(exc)) is not None:
                # Expected to happen, not a bug: no traceback.
                log.warning(
                    "upkeep.purge_failed reason=%r: tried again in %g s", outage.reason, every
                )
            else:
                log.warning("upkeep.purge_failed", exc_info=True)
        else:
            log.info("upkeep.purged", extra={"purged": purged})
        await asyncio.sleep(every)


@asynccontextmanager
async def purging(app: Litestar) -> AsyncIterator[None]:
    """A lifespan hook: the purge runs while the app serves."""
    task = asyncio.create_task(purge_forever(app.state.services))
    try:
        yield
    finally:
        await stop_task("purge", task)
