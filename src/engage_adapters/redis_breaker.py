"""Keep serving when Redis is down, slow or restarting.

A ``CircuitBreaker`` stands in front of every Redis call. Closed, calls go
through; after ``failure_threshold`` failures in a row (errors or timeouts; an
error it does not know as an outage counts too, logged with its traceback) it
opens and calls go nowhere for ``cooldown`` seconds, so a dead Redis costs no
request more than a quarter of a second. Then one call probes (half-open): if
it works, the breaker closes again. It logs one warning when it opens and one
when it closes, never one per request, and reports its state for ``/readyz``
and Prometheus.

While Redis cannot be used, the guarded adapters answer without it:

- ``GuardedCache`` answers nothing (every read a miss, no write kept), so
  sessions are checked in PostgreSQL and dashboards read from it. An
  in-process stand-in would be wrong: other processes could not see what this
  one wrote, such as a session it ended.
- ``GuardedRateLimiter`` counts in this process only, so limits hold per
  process until Redis is back.

A cache write that failed or was skipped (a session ended, a dashboard
changed) may leave a stale answer in Redis for when it is back. So the first
call of this process that gets through afterwards, whatever it is, first moves
the cache epoch on (``RedisCache.advance_epoch``): from then on no process
trusts anything cached before. Reads that fail lose nothing and move nothing.
That call need not wait for a request: while something is due, a background
task of the breaker's (``retry_pending_with``) tries Redis every
``RETRY_INTERVAL`` seconds, through the breaker (so at most one probe when
half-open), and ends once nothing is due; ``aclose`` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisClusterException, RedisError

from engage_core.inprocess import InMemoryRateLimiter
from engage_core.ports import Cache, RateDecision, RateLimiter

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "GuardedCache",
    "GuardedRateLimiter",
    "Unavailable",
]

log = logging.getLogger("engage.redis")
T = TypeVar("T")
Hook = Callable[[], Awaitable[object]]

FAILURE_THRESHOLD = 3
COOLDOWN = 2.0
CALL_TIMEOUT = 0.5
# How often a process with something due (a lost write's epoch move) tries Redis
# on its own, without waiting for a request to do it.
RETRY_INTERVAL = 0.5
# What a sick Redis raises: its own errors (connection, timeout, loading,
# read-only replica, out of memory, cluster down), a cluster client that finds
# no node or slot to use, socket errors, and our own deadline.
FAILURES: tuple[type[BaseException], ...] = (
    RedisError,
    RedisClusterException,
    OSError,
    TimeoutError,
)


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Unavailable(Exception):
    """The call was not made (circuit open) or failed; use the fallback."""


class CircuitBreaker:
    """Closed → open after ``failure_threshold`` consecutive failures → half-open
    after ``cooldown`` seconds (one probe call) → closed when the probe works."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = FAILURE_THRESHOLD,
        cooldown: float = COOLDOWN,
        call_timeout: float = CALL_TIMEOUT,
        failures: tuple[type[BaseException], ...] = FAILURES,
        now: Callable[[], float] = time.monotonic,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.call_timeout = call_timeout
        self._failures = failures
        self._now = now
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._recovery_hooks: list[Hook] = []
        self._due: dict[Hook, None] = {}  # run before the next call that gets through, in order
        self.retry_interval = retry_interval
        self._check: Hook | None = None  # what the background retry calls
        self._retrier: asyncio.Task[None] | None = None
        self._closed = False
        self.listeners: list[Callable[[BreakerState], None]] = []

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._cooled_down():
            return BreakerState.HALF_OPEN  # the next call will probe
        return self._state

    def on_recovery(self, hook: Hook) -> None:
        """Run ``hook`` on the first call that gets through after any failure,
        before that call's own operation."""
        self._recovery_hooks.append(hook)

    def when_back(self, hook: Hook) -> None:
        """Run ``hook`` (once, however often asked) before the next call that
        gets through, whoever makes it."""
        self._due[hook] = None
        self._retry_soon()

    def retry_pending_with(self, check: Hook) -> None:
        """While any hook is due, call ``check`` (a cheap command, such as a ping)
        through the breaker every ``retry_interval`` seconds in a background task,
        so that due hooks run soon after the dependency answers again even if
        nothing else calls it. The task ends when nothing is due."""
        self._check = check
        if self._due:
            self._retry_soon()

    async def aclose(self) -> None:
        """Stop the background retry for good (the hooks still due stay due)."""
        self._closed = True
        retrier, self._retrier = self._retrier, None
        if retrier is not None and not retrier.done():
            retrier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retrier

    def _retry_soon(self) -> None:
        if self._check is None or self._closed:
            return
        if self._retrier is not None and not self._retrier.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop to run it in: the next call runs the hooks
        self._retrier = loop.create_task(self._retry_pending(), name=f"{self.name}.retry_pending")

    async def _retry_pending(self) -> None:
        check = self._check
        assert check is not None
        while self._due:
            await asyncio.sleep(self.retry_interval)
            if not self._due:
                return  # a request's call ran them meanwhile
            try:
                await self.call(check)
            except Unavailable:
                continue  # still down (or open): due as before
            except Exception:
                log.exception("%s.retry_failed", self.name)
                return  # the next hook that falls due starts a new one

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation()``, or ``Unavailable`` when the circuit is open or it fails."""
        probe = self._admit()
        try:
            async with asyncio.timeout(self.call_timeout):
                while self._due:
                    hook = next(iter(self._due))
                    await hook()
                    self._due.pop(hook, None)
                result = await operation()
        except self._failures as exc:
            self._failed(exc, probe=probe)
            raise Unavailable(f"{self.name}: {type(exc).__name__}") from exc
        except Exception as exc:
            # Not an outage we know (a client library's bug on a sick cluster, such
            # as uvloop's RuntimeError for a write to a transport a dead node closed,
            # or ours): loud in the log with its traceback, but the request it
            # served is answered without Redis as in any outage, never with a 500.
            log.exception("%s.unexpected_error", self.name)
            self._failed(exc, probe=probe)
            raise Unavailable(f"{self.name}: {type(exc).__name__}") from exc
        except BaseException:
            if probe:
                self._probing = False
            raise
        self._succeeded(probe=probe)
        return result

    def _cooled_down(self) -> bool:
        return self._now() - self._opened_at >= self.cooldown

    def _admit(self) -> bool:
        """Whether a call may go ahead; True when it is the half-open probe."""
        if self._state is BreakerState.CLOSED:
            return False
        if self._state is BreakerState.OPEN and self._cooled_down():
            self._change(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        raise Unavailable(f"{self.name}: circuit {self._state}")

    def _failed(self, exc: BaseException, *, probe: bool) -> None:
        for hook in self._recovery_hooks:
            self._due[hook] = None
        if self._due:
            self._retry_soon()
        self._consecutive_failures += 1
        if probe:
            self._probing = False
            self._opened_at = self._now()
            self._change(BreakerState.OPEN)
            log.debug("%s.probe_failed error=%s", self.name, type(exc).__name__)
        elif (
            self._state is BreakerState.CLOSED
            and self._consecutive_failures >= self.failure_threshold
        ):
            self._opened_at = self._now()
            self._change(BreakerState.OPEN)
            log.warning(
                "%s.circuit_opened failures=%d error=%s cooldown=%.1fs: "
                "sessions and dashboards are read from PostgreSQL, limits are per process",
                self.name,
                self._consecutive_failures,
                type(exc).__name__,
                self.cooldown,
            )

    def _succeeded(self, *, probe: bool) -> None:
        self._consecutive_failures = 0
        if probe:
            self._probing = False
            self._change(BreakerState.CLOSED)
            log.warning("%s.circuit_closed: %s is back in use", self.name, self.name)

    def _change(self, state: BreakerState) -> None:
        if state is self._state:
            return
        self._state = state
        for listener in self.listeners:
            listener(state)


class GuardedCache:
    """A shared cache behind a breaker; while it cannot be used, the cache
    answers nothing and keeps nothing.

    ``forget_all`` makes the shared cache drop everything it holds (moves its
    epoch on); it runs when the cache is back after a write was lost.
    """

    def __init__(
        self, shared: Cache, breaker: CircuitBreaker, *, forget_all: Hook | None = None
    ) -> None:
        self._shared = shared
        self._breaker = breaker
        self._forget_all = forget_all

    async def get(self, key: str) -> bytes | None:
        try:
            return await self._breaker.call(lambda: self._shared.get(key))
        except Unavailable:
            return None

    async def set(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool:
        try:
            return await self._breaker.call(
                lambda: self._shared.set(key, value, ttl=ttl, only_if_absent=only_if_absent)
            )
        except Unavailable:
            self._lost_a_write()
            return False

    async def delete(self, *keys: str) -> None:
        try:
            await self._breaker.call(lambda: self._shared.delete(*keys))
        except Unavailable:
            self._lost_a_write()

    def _lost_a_write(self) -> None:
        # It may also have landed (a timeout): either way, nothing cached is sure.
        if self._forget_all is not None:
            self._breaker.when_back(self._forget_all)


class GuardedRateLimiter:
    """A shared rate limiter behind a breaker, counting in this process while
    it cannot be used."""

    def __init__(
        self,
        shared: RateLimiter,
        breaker: CircuitBreaker,
        fallback: RateLimiter | None = None,
    ) -> None:
        self._shared = shared
        self._breaker = breaker
        self._fallback = fallback or InMemoryRateLimiter()

    async def hit(self, key: str, *, limit: int, window: float) -> RateDecision:
        try:
            return await self._breaker.call(
                lambda: self._shared.hit(key, limit=limit, window=window)
            )
        except Unavailable:
            return await self._fallback.hit(key, limit=limit, window=window)

    async def peek(self, key: str, *, limit: int, window: float) -> RateDecision:
        try:
            return await self._breaker.call(
                lambda: self._shared.peek(key, limit=limit, window=window)
            )
        except Unavailable:
            return await self._fallback.peek(key, limit=limit, window=window)

    async def reset(self, key: str) -> None:
        await self._fallback.reset(key)
        try:
            await self._breaker.call(lambda: self._shared.reset(key))
        except Unavailable:
            return
