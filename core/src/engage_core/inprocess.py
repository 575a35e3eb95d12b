"""In-process cache and rate limiter: the ports' implementations for one
process and one event loop, what engage-suite runs when no Redis is configured
(not shared between workers), and what ``engage_core.testing`` wires."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from engage_core.ports import Clock, RateDecision

__all__ = ["InMemoryCache", "InMemoryRateLimiter"]


def _seconds_from(clock: Clock | None) -> Callable[[], float]:
    """Seconds for expiry: the given clock's (so tests can jump), else monotonic."""
    if clock is None:
        return time.monotonic
    return lambda: clock.now().timestamp()


class InMemoryCache:
    """A dict with expiry. Per process: not shared between workers."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._now = _seconds_from(clock)
        self._items: dict[str, tuple[bytes, float]] = {}

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= self._now():
            del self._items[key]
            return None
        return item[0]

    async def set(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool:
        if only_if_absent and await self.get(key) is not None:
            return False
        self._items[key] = (value, self._now() + ttl)
        self._evict_expired_sometimes()
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._items.pop(key, None)

    def _evict_expired_sometimes(self) -> None:
        if len(self._items) % 1024 == 0:
            now = self._now()
            for key in [k for k, (_, exp) in self._items.items() if exp <= now]:
                del self._items[key]


class InMemoryRateLimiter:
    """A sliding-window log per key. Per process: not shared between workers."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._now = _seconds_from(clock)
        self._events: dict[str, deque[float]] = {}

    async def hit(self, key: str, *, limit: int, window: float) -> RateDecision:
        decision = await self.peek(key, limit=limit, window=window)
        if decision.allowed:
            self._events.setdefault(key, deque()).append(self._now())
            return RateDecision(True, decision.remaining - 1, 0.0)
        return decision

    async def peek(self, key: str, *, limit: int, window: float) -> RateDecision:
        now = self._now()
        events = self._events.get(key)
        if events is not None:
            while events and events[0] <= now - window:
                events.popleft()
            if not events:
                del self._events[key]
                events = None
        count = len(events) if events else 0
        if count < limit:
            return RateDecision(True, limit - count, 0.0)
        assert events is not None
        # Allowed again once the oldest event that keeps us at the limit leaves the window.
        return RateDecision(False, 0, max(0.0, events[count - limit] + window - now))

    async def reset(self, key: str) -> None:
        self._events.pop(key, None)
