"""Idempotent requests: a repeated key returns the first answer and changes nothing."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from uuid import UUID

from attrs import define

from engage_core.errors import IdempotencyKeyReused, RequestInProgress, ValidationFailed
from engage_core.ports import IdempotencyStore, StoredResponse

KEY_LIFETIME = timedelta(hours=24)
# How long a request may run before its key is free again for a retry.
IN_PROGRESS_LEASE = timedelta(minutes=1)
_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces


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
    store: IdempotencyStore
    lifetime: timedelta = KEY_LIFETIME

    async def run(
        self,
        *,
        user_id: UUID,
        key: str,
        request_fingerprint: str,
        action: Callable[[], Awaitable[StoredResponse]],
    ) -> StoredResponse:
        """Run ``action`` once per ``(user, key)``; repeats get its stored response.

        The same key with a different request is refused, as is a repeat that
        arrives while the first is still running. A failed action stores
        nothing, so it can be retried with the same key.
        """
        if not _KEY.fullmatch(key):
            raise ValidationFailed.single(
                "Idempotency-Key", "must be 1 to 255 printable ASCII characters"
            )
        reservation = await self.store.reserve(
            user_id, key, request_fingerprint, lease=IN_PROGRESS_LEASE.total_seconds()
        )
        if not reservation.first:
            if reservation.fingerprint != request_fingerprint:
                raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
            if reservation.response is None:
                raise RequestInProgress("a request with this Idempotency-Key is still running")
            return reservation.response
        try:
            response = await action()
        except BaseException:
            await self.store.release(user_id, key)
            raise
        await self.store.complete(user_id, key, response, ttl=self.lifetime.total_seconds())
        return response
