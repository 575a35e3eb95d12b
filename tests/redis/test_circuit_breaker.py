"""The circuit breaker, on its own: states, probes, logging, recovery hooks."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from engage_adapters.redis_breaker import (
    BreakerState,
    CircuitBreaker,
    GuardedCache,
    GuardedRateLimiter,
    Unavailable,
)
from engage_core.testing import InMemoryCache, InMemoryRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Dependency:
    """An operation that works, fails or hangs as told, counting its calls."""

    def __init__(self) -> None:
        self.mode = "up"
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.mode == "down":
            raise RedisConnectionError("refused")
        if self.mode == "slow":
            await asyncio.sleep(10)
        return "answer"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("redis", failure_threshold=3, cooldown=2.0, call_timeout=0.05, now=clock)


@pytest.fixture
def dependency() -> Dependency:
    return Dependency()


async def fail(breaker: CircuitBreaker, dependency: Dependency, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Unavailable):
            await breaker.call(dependency)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "engage.redis" and r.levelno == logging.WARNING
    ]


async def test_calls_go_through_while_closed(breaker: CircuitBreaker, dependency: Dependency):
    assert await breaker.call(dependency) == "answer"
    assert breaker.state is BreakerState.CLOSED


async def test_it_opens_after_consecutive_failures_and_then_calls_nothing(
    breaker: CircuitBreaker, dependency: Dependency
):
    dependency.mode = "down"
    await fail(breaker, dependency, 3)
    assert breaker.state is BreakerState.OPEN

    await fail(breaker, dependency, 10)

    assert dependency.calls == 3


async def test_a_success_resets_the_count(breaker: CircuitBreaker, dependency: Dependency):
    for _ in range(3):
        dependency.mode = "down"
        await fail(breaker, dependency, 2)
        dependency.mode = "up"
        await breaker.call(dependency)

    assert breaker.state is BreakerState.CLOSED


async def test_a_call_that_takes_too_long_is_a_failure(
    breaker: CircuitBreaker, dependency: Dependency
):
    dependency.mode = "slow"

    await fail(breaker, dependency, 3)

    assert breaker.state is BreakerState.OPEN


async def test_after_the_cooldown_one_probe_closes_it_again(
    breaker: CircuitBreaker, dependency: Dependency, clock: Clock
):
    dependency.mode = "down"
    await fail(breaker, dependency, 3)
    clock.now += 2.0
    assert breaker.state is BreakerState.HALF_OPEN
    dependency.mode = "up"

    assert await breaker.call(dependency) == "answer"

    assert breaker.state is BreakerState.CLOSED


async def test_only_one_call_probes_at_a_time(
    breaker: CircuitBreaker, dependency: Dependency, clock: Clock
):
    dependency.mode = "down"
    await fail(breaker, dependency, 3)
    clock.now += 2.0
    dependency.mode = "slow"
    breaker.call_timeout = 0.2
    probe = asyncio.create_task(breaker.call(dependency))
    await asyncio.sleep(0.05)

    await fail(breaker, dependency, 5)  # refused while the probe is out

    with pytest.raises(Unavailable):
        await probe
    assert dependency.calls == 3 + 1


async def test_a_failed_probe_opens_it_for_another_cooldown(
    breaker: CircuitBreaker, dependency: Dependency, clock: Clock
):
    dependency.mode = "down"
    await fail(breaker, dependency, 3)
    clock.now += 2.0

    await fail(breaker, dependency, 1)

    assert breaker.state is BreakerState.OPEN
    clock.now += 1.9
    await fail(breaker, dependency, 3)
    assert dependency.calls == 4
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN


async def test_one_warning_when_it_opens_and_one_when_it_closes_not_one_per_call(
    breaker: CircuitBreaker, dependency: Dependency, clock: Clock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="engage.redis")
    dependency.mode = "down"
    await fail(breaker, dependency, 50)
    for _ in range(5):  # probes that fail: still one outage
        clock.now += 2.0
        await fail(breaker, dependency, 10)
    assert len(warnings(caplog)) == 1
    assert "circuit_opened" in warnings(caplog)[0]

    dependency.mode = "up"
    clock.now += 2.0
    for _ in range(50):
        await breaker.call(dependency)

    assert len(warnings(caplog)) == 2
    assert "circuit_closed" in warnings(caplog)[1]


async def test_listeners_hear_every_state_change(
    breaker: CircuitBreaker, dependency: Dependency, clock: Clock
):
    heard: list[BreakerState] = []
    breaker.listeners.append(heard.append)
    dependency.mode = "down"
    await fail(breaker, dependency, 5)
    clock.now += 2.0
    dependency.mode = "up"
    await breaker.call(dependency)

    assert heard == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


async def test_recovery_hooks_run_once_before_the_first_call_after_any_failure(
    breaker: CircuitBreaker, dependency: Dependency
):
    order: list[str] = []

    async def hook() -> None:
        order.append("hook")

    async def operation() -> None:
        order.append("call")

    breaker.on_recovery(hook)
    await breaker.call(operation)
    dependency.mode = "down"
    await fail(breaker, dependency, 1)  # one failure is enough: a write may be lost

    await breaker.call(operation)
    await breaker.call(operation)

    assert order == ["call", "hook", "call", "call"]


async def test_an_error_it_does_not_know_is_an_outage_logged_with_its_traceback(
    breaker: CircuitBreaker, caplog: pytest.LogCaptureFixture
):
    # What uvloop raises for a write to a transport that a dead node closed.
    async def closed() -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    for _ in range(3):
        with pytest.raises(Unavailable):
            await breaker.call(closed)

    assert breaker.state is BreakerState.OPEN
    unexpected = [r for r in caplog.records if r.getMessage().endswith(".unexpected_error")]
    assert len(unexpected) == 3
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in unexpected)


async def test_the_guarded_cache_answers_nothing_while_open(
    breaker: CircuitBreaker, dependency: Dependency
):
    shared = InMemoryCache()
    await shared.set("key", b"value", ttl=60)
    guarded = GuardedCache(shared, breaker)
    assert await guarded.get("key") == b"value"
    dependency.mode = "down"
    await fail(breaker, dependency, 3)

    assert await guarded.get("key") is None
    assert await guarded.set("other", b"value", ttl=60) is False
    await guarded.delete("key")
    assert await shared.get("key") == b"value"  # not reached
    assert await shared.get("other") is None


async def test_the_guarded_limiter_counts_in_process_while_open(
    breaker: CircuitBreaker, dependency: Dependency
):
    shared = InMemoryRateLimiter()
    guarded = GuardedRateLimiter(shared, breaker)
    await guarded.hit("k", limit=2, window=60)
    dependency.mode = "down"
    await fail(breaker, dependency, 3)

    decisions = [await guarded.hit("k", limit=2, window=60) for _ in range(3)]

    assert [d.allowed for d in decisions] == [True, True, False]
    assert (await shared.peek("k", limit=2, window=60)).remaining == 1  # untouched


async def test_a_hook_due_when_back_runs_once_before_the_next_call_that_gets_through(
    breaker: CircuitBreaker, dependency: Dependency, clock: Clock
):
    ran: list[str] = []

    async def forget_all() -> None:
        ran.append("forget")

    dependency.mode = "down"
    await fail(breaker, dependency, 3)
    breaker.when_back(forget_all)
    breaker.when_back(forget_all)
    clock.now += 2.0
    dependency.mode = "up"

    await breaker.call(dependency)  # any call: here, the probe
    await breaker.call(dependency)

    assert ran == ["forget"]


async def test_the_guarded_cache_forgets_everything_when_back_after_losing_a_write(
    breaker: CircuitBreaker, dependency: Dependency, clock: Clock
):
    forgotten: list[bool] = []

    async def forget_all() -> None:
        forgotten.append(True)

    guarded = GuardedCache(InMemoryCache(), breaker, forget_all=forget_all)
    dependency.mode = "down"
    await fail(breaker, dependency, 3)
    await guarded.get("key")  # a read lost nothing
    clock.now += 2.0
    dependency.mode = "up"
    await breaker.call(dependency)
    assert forgotten == []

    dependency.mode = "down"
    await fail(breaker, dependency, 3)
    await guarded.set("session", b"ended", ttl=60)  # skipped: lost
    clock.now += 2.0
    dependency.mode = "up"
    await guarded.get("session")

    assert forgotten == [True]


async def test_a_due_hook_runs_soon_after_the_dependency_is_back_with_no_call_of_anyones(
    dependency: Dependency,
):
    breaker = CircuitBreaker("redis", cooldown=0.05, call_timeout=0.05, retry_interval=0.01)
    breaker.retry_pending_with(dependency)
    ran: list[str] = []
    forgotten = asyncio.Event()

    async def forget_all() -> None:
        if dependency.mode == "down":
            raise RedisConnectionError("refused")
        ran.append("forget")
        forgotten.set()

    dependency.mode = "down"
    breaker.when_back(forget_all)  # a write was lost
    await asyncio.sleep(0.2)
    assert ran == []
    assert breaker.state is not BreakerState.CLOSED  # the retries failed and opened it

    dependency.mode = "up"
    async with asyncio.timeout(1.0):  # no call of the test's: the breaker's own retry
        await forgotten.wait()

    assert ran == ["forget"]
    assert breaker.state is BreakerState.CLOSED
    await asyncio.sleep(0.05)
    calls = dependency.calls
    await asyncio.sleep(0.05)
    assert dependency.calls == calls  # nothing due: the retry ended
    assert [t for t in asyncio.all_tasks() if t.get_name() == "redis.retry_pending"] == []


async def test_closing_the_breaker_stops_its_retry(dependency: Dependency):
    breaker = CircuitBreaker("redis", cooldown=0.05, call_timeout=0.05, retry_interval=0.01)
    breaker.retry_pending_with(dependency)
    dependency.mode = "down"

    async def forget_all() -> None:
        raise RedisConnectionError("refused")

    breaker.when_back(forget_all)
    await asyncio.sleep(0.05)
    await breaker.aclose()
    breaker.when_back(forget_all)  # after closing: no new retry either

    assert [t for t in asyncio.all_tasks() if t.get_name() == "redis.retry_pending"] == []
    calls = dependency.calls
    await asyncio.sleep(0.05)
    assert dependency.calls == calls


async def test_without_a_retry_check_nothing_runs_in_the_background(
    breaker: CircuitBreaker, dependency: Dependency
):
    ran: list[str] = []

    async def forget_all() -> None:
        ran.append("forget")

    breaker.when_back(forget_all)
    await asyncio.sleep(0.05)
    assert ran == []
    assert asyncio.all_tasks() == {asyncio.current_task()}
