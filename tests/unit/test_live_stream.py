"""The live stream's hub over the in-memory feed: each new metric once, in id order,
resumes without a gap or a duplicate, and streams end with what authorised them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from engage_core import testing
from engage_core.errors import RateLimited
from engage_core.model import (
    ApiKey,
    ApiKeyScope,
    Grant,
    GrantId,
    MetricDraft,
    MetricType,
    MetricValue,
    Session,
    Timestamp,
)
from engage_core.services.live import LiveMetrics, Stream, StreamEvent

WAIT = 5.0  # how long a test waits for what must happen (it happens in milliseconds)


class Setup:
    def __init__(self) -> None:
        self.clock = testing.FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
        self.metrics = testing.InMemoryMetricRepository()
        self.sessions = testing.InMemorySessionRepository()
        self.keys = testing.InMemoryApiKeyRepository()
        self.feed = testing.InMemoryMetricFeed(self.metrics, self.sessions, self.keys)
        self.live = LiveMetrics(self.feed, self.clock, streams_per_user=3, tick=0.01)
        self.user = uuid4()

    async def record(self, metric_type: str = "steps", user: UUID | None = None) -> int:
        draft = MetricDraft(
            metric_type=MetricType(metric_type),
            metric_value=MetricValue(1),
            recorded_at=Timestamp(self.clock.now()),
        )
        return (await self.metrics.add(user or self.user, draft)).id

    async def new_session(self) -> Session:
        session = Session(
            id=uuid4(),
            user_id=self.user,
            family_id=uuid4(),
            token_hash=uuid4().hex,
            created_at=self.clock.now(),
            expires_at=self.clock.now() + timedelta(days=1),
        )
        await self.sessions.add(session)
        return session

    async def session_grant(self, session: Session | None = None) -> Grant:
        """A grant of ``session``'s family (a new session's when none is given)."""
        session = session or await self.new_session()
        return Grant(GrantId("family", session.family_id), self.user, session.expires_at)

    async def key_grant(self, expires_at: datetime | None = None) -> Grant:
        key = ApiKey(
            id=uuid4(),
            user_id=self.user,
            name="sensor",
            scopes=frozenset({ApiKeyScope.METRICS_READ}),
            secret_hash="h",
            created_at=self.clock.now(),
            expires_at=expires_at,
        )
        await self.keys.add(key)
        return Grant(GrantId("key", key.id), self.user, expires_at)


class Reader:
    """Reads one stream in a task of its own, as a response would."""

    def __init__(self, live: LiveMetrics, stream: Stream) -> None:
        self.events: list[StreamEvent] = []
        self._changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._read(live, stream))

    async def _read(self, live: LiveMetrics, stream: Stream) -> None:
        async for event in live.events(stream):
            self.events.append(event)
            self._changed.set()

    def metric_ids(self) -> list[int]:
        return [e.id for e in self.events if e.kind == "metric" and e.id is not None]

    async def until(self, done: Callable[[Reader], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not done(self):
                self._changed.clear()
                if self.task.done():
                    assert done(self), self.events
                    return
                await self._changed.wait()

    async def has_ids(self, *ids: int) -> None:
        await self.until(lambda r: set(ids) <= set(r.metric_ids()))

    async def ended(self) -> str:
        await self.until(lambda r: any(e.kind == "end" for e in r.events))
        return next(e.reason for e in self.events if e.kind == "end")


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    setup = Setup()
    yield setup
    await setup.live.stop()


async def test_a_stream_gets_each_new_metric_of_its_user_once_in_id_order(setup: Setup) -> None:
    before = await setup.record()
    stream = await setup.live.open(await setup.session_grant())
    reader = Reader(setup.live, stream)

    ids = [await setup.record() for _ in range(3)]
    await setup.record(user=uuid4())  # someone else's
    ids.append(await setup.record())
    await reader.has_ids(*ids)

    assert reader.events[0] == StreamEvent("position", id=before)
    assert reader.metric_ids() == ids


async def test_a_filtered_stream_gets_only_its_type(setup: Setup) -> None:
    stream = await setup.live.open(await setup.session_grant(), metric_type="clicks")
    reader = Reader(setup.live, stream)

    await setup.record("steps")
    click = await setup.record("clicks")
    await setup.record("steps")
    last = await setup.record("clicks")
    await reader.has_ids(click, last)

    assert reader.metric_ids() == [click, last]


async def test_resuming_after_an_id_sends_every_metric_after_it_then_the_new_ones(
    setup: Setup,
) -> None:
    seen = await setup.record()
    missed = [await setup.record() for _ in range(4)]
    stream = await setup.live.open(await setup.session_grant(), after=str(seen))
    reader = Reader(setup.live, stream)
    await reader.has_ids(*missed)

    new = await setup.record()
    await reader.has_ids(new)

    assert reader.metric_ids() == [*missed, new]


async def test_metrics_written_while_the_feed_was_away_arrive_all_the_same(setup: Setup) -> None:
    stream = await setup.live.open(await setup.session_grant())
    reader = Reader(setup.live, stream)
    first = await setup.record()
    await reader.has_ids(first)

    # Written (with no pause for the hub to hear of them), then the feed's word of
    # them is lost with its connection.
    during = [await setup.record() for _ in range(3)]
    setup.feed.lose_connection()
    await reader.has_ids(*during)
    after = await setup.record()
    await reader.has_ids(after)

    assert reader.metric_ids() == [first, *during, after]


async def test_ending_the_session_ends_its_streams_and_no_other(setup: Setup) -> None:
    grant = await setup.session_grant()
    ended = Reader(setup.live, await setup.live.open(grant))
    other = Reader(setup.live, await setup.live.open(await setup.session_grant()))

    await setup.sessions.end_family(grant.id.id, setup.clock.now(), "logged out")

    assert await ended.ended() == "access ended"
    still = await setup.record()
    await other.has_ids(still)


async def test_a_refresh_does_not_end_the_stream(setup: Setup) -> None:
    stale = await setup.new_session()
    grant = await setup.session_grant(stale)
    reader = Reader(setup.live, await setup.live.open(grant))
    new = Session(
        id=uuid4(),
        user_id=setup.user,
        family_id=grant.id.id,
        token_hash="t2",
        created_at=setup.clock.now(),
        expires_at=stale.expires_at,
    )

    assert await setup.sessions.rotate(stale.id, new, setup.clock.now())
    later = await setup.record()

    await reader.has_ids(later)


async def test_revoking_the_key_ends_its_streams(setup: Setup) -> None:
    grant = await setup.key_grant()
    reader = Reader(setup.live, await setup.live.open(grant))

    await setup.keys.revoke(grant.id.id, setup.clock.now())

    assert await reader.ended() == "access ended"


async def test_a_grant_that_ended_while_the_feed_was_away_ends_its_streams(setup: Setup) -> None:
    grant = await setup.key_grant()
    reader = Reader(setup.live, await setup.live.open(grant))
    setup.keys.on_revoked.clear()  # the feed does not hear of it
    await setup.keys.revoke(grant.id.id, setup.clock.now())

    setup.feed.lose_connection()

    assert await reader.ended() == "access ended"


async def test_a_stream_ends_when_its_key_expires(setup: Setup) -> None:
    grant = await setup.key_grant(expires_at=setup.clock.now() + timedelta(minutes=1))
    reader = Reader(setup.live, await setup.live.open(grant))

    setup.clock.advance(timedelta(minutes=1))

    assert await reader.ended() == "access expired"


async def test_one_user_may_hold_only_so_many_streams(setup: Setup) -> None:
    grant = await setup.session_grant()
    streams = [await setup.live.open(grant) for _ in range(3)]

    with pytest.raises(RateLimited):
        await setup.live.open(grant)
    setup.live.close(streams[0])
    await setup.live.open(grant)


async def test_a_stream_that_falls_too_far_behind_is_closed(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engage_core.services.live.MAX_WAITING", 3)
    stream = await setup.live.open(await setup.session_grant())  # nobody reads it

    for _ in range(4):
        await setup.record()
    async with asyncio.timeout(WAIT):
        while stream.end_reason is None:
            await stream.changed()

    assert stream.end_reason == "too slow"


async def test_heartbeats_come_while_nothing_happens(setup: Setup) -> None:
    setup.live.heartbeat = 0.05
    reader = Reader(setup.live, await setup.live.open(await setup.session_grant()))

    await reader.until(lambda r: sum(e.kind == "heartbeat" for e in r.events) >= 2)


# Superscript two, circled one, Arabic-Indic three, fullwidth one: digits to
# str.isdigit, and int() reads the last two; only ASCII digits make an id.
@pytest.mark.parametrize(
    "after", ["-1", "x", "1.5", "99999999999999999999", "\u00b2", "\u2460", "\u0663", "\uff11"]
)
async def test_a_bad_starting_id_is_refused(setup: Setup, after: str) -> None:
    from engage_core.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        await setup.live.open(await setup.session_grant(), after=after)
