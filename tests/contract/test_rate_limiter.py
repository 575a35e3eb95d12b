"""Contract of RateLimiter: a sliding window in which refused events do not count."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from engage_core.ports import RateLimiter

if TYPE_CHECKING:
    from conftest import Subject

LIMIT = 3
# Short, because a real store's time can only be advanced by sleeping.
WINDOW = 0.6


async def _use_up(limiter: RateLimiter, key: str) -> None:
    for _ in range(LIMIT):
        assert (await limiter.hit(key, limit=LIMIT, window=WINDOW)).allowed


async def test_hit_allows_limit_events_then_refuses(rate_limiter: Subject[RateLimiter]) -> None:
    limiter = rate_limiter.impl

    allowed = [await limiter.hit("k", limit=LIMIT, window=WINDOW) for _ in range(LIMIT)]
    refused = await limiter.hit("k", limit=LIMIT, window=WINDOW)

    assert [d.allowed for d in allowed] == [True] * LIMIT
    assert [d.remaining for d in allowed] == [2, 1, 0]
    assert refused.allowed is False
    assert refused.remaining == 0
    assert 0 < refused.retry_after <= WINDOW


async def test_retry_after_shrinks_as_the_window_slides(rate_limiter: Subject[RateLimiter]) -> None:
    limiter = rate_limiter.impl
    await _use_up(limiter, "k")
    await rate_limiter.advance(WINDOW / 2)

    refused = await limiter.hit("k", limit=LIMIT, window=WINDOW)

    assert refused.allowed is False
    assert 0 < refused.retry_after <= WINDOW / 2


async def test_waiting_retry_after_is_enough(rate_limiter: Subject[RateLimiter]) -> None:
    limiter = rate_limiter.impl
    await _use_up(limiter, "k")
    refused = await limiter.hit("k", limit=LIMIT, window=WINDOW)

    await rate_limiter.advance(refused.retry_after + 0.05)

    assert (await limiter.hit("k", limit=LIMIT, window=WINDOW)).allowed is True


async def test_refused_hits_are_not_counted(rate_limiter: Subject[RateLimiter]) -> None:
    limiter = rate_limiter.impl
    await _use_up(limiter, "k")
    await rate_limiter.advance(WINDOW / 2)
    for _ in range(5):
        assert (await limiter.hit("k", limit=LIMIT, window=WINDOW)).allowed is False

    # The allowed hits have left the window; the refused ones, had they counted, would not.
    await rate_limiter.advance(WINDOW / 2 + 0.1)

    await _use_up(limiter, "k")


async def test_allowed_again_after_the_window_passes(rate_limiter: Subject[RateLimiter]) -> None:
    limiter = rate_limiter.impl
    await _use_up(limiter, "k")

    await rate_limiter.advance(WINDOW + 0.1)

    decision = await limiter.hit("k", limit=LIMIT, window=WINDOW)
    assert decision.allowed is True
    assert decision.remaining == LIMIT - 1


async def test_peek_counts_nothing(rate_limiter: Subject[RateLimiter]) -> None:
    limiter = rate_limiter.impl

    for _ in range(LIMIT * 2):
        peeked = await limiter.peek("k", limit=LIMIT, window=WINDOW)
        assert (peeked.allowed, peeked.remaining) == (True, LIMIT)

    await _use_up(limiter, "k")
    peeked = await limiter.peek("k", limit=LIMIT, window=WINDOW)
    assert peeked.allowed is False
    assert 0 < peeked.retry_after <= WINDOW


async def test_peek_reports_what_remains(rate_limiter: Subject[RateLimiter]) -> None:
    limiter = rate_limiter.impl
    await limiter.hit("k", limit=LIMIT, window=WINDOW)

    peeked = await limiter.peek("k", limit=LIMIT, window=WINDOW)

    assert (peeked.allowed, peeked.remaining) == (True, LIMIT - 1)


async def test_reset_clears_a_key(rate_limiter: Subject[RateLimiter]) -> None:
    limiter = rate_limiter.impl
    await _use_up(limiter, "k")

    await limiter.reset("k")
    await limiter.reset("never-hit")

    await _use_up(limiter, "k")


@pytest.mark.parametrize("other", ["k2", "K", "k:1"])
async def test_keys_are_independent(rate_limiter: Subject[RateLimiter], other: str) -> None:
    limiter = rate_limiter.impl
    await _use_up(limiter, "k")

    await _use_up(limiter, other)

    assert (await limiter.hit("k", limit=LIMIT, window=WINDOW)).allowed is False
    assert (await limiter.hit(other, limit=LIMIT, window=WINDOW)).allowed is False
