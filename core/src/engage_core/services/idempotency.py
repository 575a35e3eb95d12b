"""Idempotent requests: a repeated key returns the first answer and changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from uuid import UUID

from attrs import define, field

from engage_core.errors import IdempotencyKeyReused, RequestInProgress, ValidationFailed
from engage_core.ports import IdempotencyStore, StoredResponse, UnitOfWork

__all__ = [
    "IN_PROGRESS_LEASE",
    "KEY_LIFETIME",
    "RETRY_DELAYS",
    "IdempotencyGuard",
    "fingerprint",
]

KEY_LIFETIME = timedelta(hours=24)
# How long a request may run before its key is free again for a retry.
IN_PROGRESS_LEASE = timedelta(minutes=1)
_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces
# When the store cannot free a key (its database went away in the middle of the
# request), freeing it is tried again this many seconds apart: 45.5 s in all,
# within the lease, after which another request may hold the key anyway.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0)


def fingerprint(*parts: bytes | str) -> str:
    """A digest of what makes two requests the same request; defined for any input."""
    digest = hashlib.sha256()
    for part in parts:
        # surrogatepass: a lone surrogate (which JSON and ASGI paths can carry) still digests.
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@define
class IdempotencyGuard:
    """Runs each keyed request once. ``uow`` must be the unit of work of the
    storage that holds both ``store`` and what the actions write, so that a
    change and its recorded answer commit together."""

    store: IdempotencyStore
    uow: UnitOfWork
    lifetime: timedelta = KEY_LIFETIME
    lease: timedelta = IN_PROGRESS_LEASE
    retry_delays: tuple[float, ...] = RETRY_DELAYS
    # Steps being retried; held here because the event loop keeps only weak references.
    _retrying: set[asyncio.Task[None]] = field(factory=set, init=False)

    async def run(
        self,
        *,
        user_id: UUID,
        key: str,
        request_fingerprint: str,
        action: Callable[[], Awaitable[StoredResponse]],
    ) -> StoredResponse:
        """Run ``action`` once per ``(user, key)``; repeats get its stored response.

        The key is reserved first, on its own, so a repeat that arrives while
        the first is still running is refused (as is the same key with a
        different request). Then the action and the recording of its response
        run in one unit of work: both commit or neither does. A response is
        returned only once it is committed with the change; after any failure,
        even one that leaves the outcome unknown (the connection cut during the
        commit), a retry with the key either replays the committed response or,
        nothing having been stored, runs the action. A failed action's error is
        the one raised, even when the store then fails to free the key (it is
        freed in the background once the store answers again).
        """
        if not _KEY.fullmatch(key):
            raise ValidationFailed.single(
                "Idempotency-Key", "must be 1 to 255 printable ASCII characters"
            )
        reservation = await self.store.reserve(
            user_id, key, request_fingerprint, lease=self.lease.total_seconds()
        )
        if not reservation.first:
            if reservation.fingerprint != request_fingerprint:
                raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
            if reservation.response is None:
                raise RequestInProgress("a request with this Idempotency-Key is still running")
            return reservation.response
        ttl = self.lifetime.total_seconds()
        try:
            async with self.uow.atomic():
                response = await action()
                await self.store.complete(user_id, key, response, ttl=ttl)
        except BaseException:
            # Frees only a key without a response: one whose commit went through keeps it.
            await self._settle(lambda: self.store.release(user_id, key))
            raise
        return response

    async def settled(self) -> None:
        """Wait until every step being retried has succeeded or given up."""
        while pending := [retry for retry in self._retrying if not retry.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _settle(self, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except Exception:  # the store is failing too; the request's own outcome stands
            retry = asyncio.get_running_loop().create_task(self._retry(step))
            self._retrying.add(retry)
            retry.add_done_callback(self._retrying.discard)

    async def _retry(self, step: Callable[[], Awaitable[None]]) -> None:
        for delay in self.retry_delays:
            await asyncio.sleep(delay)
            with contextlib.suppress(Exception):  # still failing: wait longer
                await step()
                return
