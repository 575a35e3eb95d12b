"""The live stream: every new metric of a user, pushed to that user's open streams.

One ``LiveMetrics`` per process holds the process's streams. Its ``MetricFeed``
(PostgreSQL's LISTEN/NOTIFY on one connection, or the in-memory fake) says, in
commit order, which metric ids each user got and whose access ended. For each
user with streams open here, ``LiveMetrics`` reads the new rows once and hands
every stream those it has not had, in id order; a stream that resumes from an
earlier id first reads what it missed from the table itself.

Gap-free by construction: the writers of one user's metrics hand out ids in
the order they commit (the feed's ``position`` and the repositories see to
it), so "every metric of the user after id N" is a complete answer at any
moment, and a stream's position is just the last id it has handled. When the
feed's connection was lost, what it would have said is read from the table.

At most ``streams_per_user`` streams of one user are open at once: the feed's
``follow`` counts each new one among the user's streams in every process on the
same storage (the deployment's, with PostgreSQL), and a stream past the limit
is refused and its follow undone.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Literal
from uuid import UUID

from attrs import define, field, frozen

from engage_core.errors import RateLimited, Unavailable, ValidationFailed
from engage_core.model import EngagementMetric, Grant, GrantId, GrantKind, MetricType
from engage_core.ports import (
    AccessEnded,
    Clock,
    Listening,
    MetricFeed,
    MetricsAdded,
    Notice,
)

# The feed's port and notices (ports) and the grants (model) are re-exported here,
# where they were defined before.
__all__ = [
    "CATCH_UP_LIMIT",
    "HEARTBEAT_SECONDS",
    "LIVE_LIMIT",
    "MAX_WAITING",
    "PAGE",
    "READY_TIMEOUT",
    "AccessEnded",
    "Grant",
    "GrantId",
    "GrantKind",
    "Listening",
    "LiveMetrics",
    "MetricFeed",
    "MetricsAdded",
    "Notice",
    "Stream",
    "StreamEvent",
    "check_after",
]

log = logging.getLogger("engage.live")

HEARTBEAT_SECONDS = 15.0
# A statement that adds more metrics than this (a backfill) reaches streams as one
# "backfill" event with the count, not one event per metric.
LIVE_LIMIT = 1000
# A stream that resumes more than this many metrics behind gets one "backfill" event.
CATCH_UP_LIMIT = 10_000
PAGE = 500
# A stream whose client reads slower than metrics arrive is closed past this many
# waiting items; the client resumes from the table with Last-Event-ID.
MAX_WAITING = 5_000
READY_TIMEOUT = 5.0


# --- what a stream sends --------------------------------------------------------------


@frozen
class StreamEvent:
    """``metric``: one new metric (``id`` its id). ``backfill``: ``count`` metrics at
    once, through ``id``. ``position``: the stream starts after ``id``. ``heartbeat``:
    nothing new. ``end``: the stream closes, for ``reason``."""

    kind: Literal["metric", "backfill", "position", "heartbeat", "end"]
    id: int | None = None
    metric: EngagementMetric | None = None
    count: int = 0
    reason: str = ""


_HEARTBEAT = StreamEvent("heartbeat")
# A metric id as a client sends it back: ASCII digits only (str.isdigit also takes
# "²" or "①", which int() refuses), at most 19 of them (a bigint).
_METRIC_ID = re.compile(r"[0-9]{1,19}", re.ASCII)


def check_after(raw: object) -> int | None:
    """A stream's starting id (``?after=`` or ``Last-Event-ID``): a whole number."""
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        number = raw
    elif isinstance(raw, str) and _METRIC_ID.fullmatch(raw.strip()):
        number = int(raw.strip())
    else:
        raise ValidationFailed.single("after", "must be a metric id (a whole number)")
    if number < 0:
        raise ValidationFailed.single("after", "must be a metric id (a whole number)")
    return number


@define(eq=False)
class Stream:
    """One open stream: its user, filter and grant, and what waits to be sent."""

    user_id: UUID
    metric_type: MetricType | None
    grant: Grant
    # The last id this stream has handled: sent, or skipped by its filter.
    cursor: int
    # Every metric of the user up to this id was committed when the stream opened.
    opened_at_id: int
    # Made when something waits and dropped when it is sent, and a future rather than
    # an Event to wake the reader: an idle stream holds neither's buffer (bench/README.md).
    waiting: deque[StreamEvent] | None = None
    end_reason: str | None = None
    _wake: asyncio.Future[None] | None = field(default=None, init=False)

    def offer(self, events: Iterable[StreamEvent]) -> None:
        if self.end_reason is not None:
            return
        if self.waiting is None:
            self.waiting = deque()
        self.waiting.extend(events)
        if len(self.waiting) > MAX_WAITING:
            self.waiting = None
            self.end("too slow")
        self._wake_up()

    def end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self._wake_up()

    async def changed(self) -> None:
        """Until the next offer, or the end (at once if it ended)."""
        if self.end_reason is not None:
            return
        if self._wake is None or self._wake.done():
            self._wake = asyncio.get_running_loop().create_future()
        await self._wake

    def _wake_up(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)


@define(eq=False)
class _Follower:
    """The streams of one user in this process, and how far their rows were read."""

    streams: set[Stream]
    fetched: int
    pending: deque[MetricsAdded] = field(factory=deque)
    resync: bool = False
    task: asyncio.Task[None] | None = None


@define
class LiveMetrics:
    feed: MetricFeed
    clock: Clock
    streams_per_user: int = 10
    heartbeat: float = HEARTBEAT_SECONDS
    # How often expiries are checked: a grant that ends by time ends its streams within it.
    tick: float = 1.0
    _followers: dict[UUID, _Follower] = field(factory=dict, init=False)
    _by_grant: dict[GrantId, set[Stream]] = field(factory=dict, init=False)
    _listening: asyncio.Event = field(factory=asyncio.Event, init=False)
    _listened_before: bool = field(default=False, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _unfollowing: set[asyncio.Task[None]] = field(factory=set, init=False)

    # --- streams -----------------------------------------------------------------

    def open_streams(self) -> int:
        return sum(len(f.streams) for f in self._followers.values())

    async def open(
        self, grant: Grant, *, metric_type: object = None, after: object = None
    ) -> Stream:
        """A stream of the grant's user's new metrics (of one type, if given), from
        just after ``after`` when given (a resume), else from now."""
        kind = None if metric_type is None else MetricType(metric_type)
        start = check_after(after)
        here = self._followers.get(grant.user_id)
        self._refuse_over_limit(0 if here is None else len(here.streams))  # before any I/O
        await self._await_listening()
        # Followed first, then the position: a write the position does not cover is notified.
        # The follow counts the stream, in every process on the same storage: past the
        # limit, it is undone and the stream refused.
        open_now = await self.feed.follow(grant.user_id)
        try:
            self._refuse_over_limit(open_now - 1)
            position = await self.feed.position(grant.user_id)
        except BaseException:
            await self.feed.unfollow(grant.user_id)
            raise
        stream = Stream(
            user_id=grant.user_id,
            metric_type=kind,
            grant=grant,
            cursor=position if start is None else min(start, position),
            opened_at_id=position,
        )
        follower = self._followers.get(grant.user_id)
        if follower is None:
            follower = self._followers[grant.user_id] = _Follower(streams=set(), fetched=position)
        follower.streams.add(stream)
        self._by_grant.setdefault(grant.id, set()).add(stream)
        return stream

    def _refuse_over_limit(self, open_before: int) -> None:
        """Refuse a stream when ``open_before`` of the user's are open already."""
        if open_before >= self.streams_per_user:
            raise RateLimited(
                f"at most {self.streams_per_user} streams may be open for one user",
                retry_after=int(self.heartbeat),
            )

    def close(self, stream: Stream) -> None:
        stream.end(stream.end_reason or "closed")
        follower = self._followers.get(stream.user_id)
        if follower is not None and stream in follower.streams:
            follower.streams.discard(stream)
            unfollowing = asyncio.get_running_loop().create_task(self._unfollow(stream.user_id))
            self._unfollowing.add(unfollowing)
            unfollowing.add_done_callback(self._unfollowing.discard)
            if not follower.streams:
                del self._followers[stream.user_id]
                if follower.task is not None:
                    follower.task.cancel()
        holders = self._by_grant.get(stream.grant.id)
        if holders is not None:
            holders.discard(stream)
            if not holders:
                del self._by_grant[stream.grant.id]

    async def events(self, stream: Stream) -> AsyncIterator[StreamEvent]:
        """What to send on ``stream``, until it ends; closing it when done."""
        try:
            yield StreamEvent("position", id=stream.cursor)
            async for event in self._catch_up(stream):
                yield event
            while stream.end_reason is None:
                if not stream.waiting:
                    await stream.changed()
                while stream.waiting and stream.end_reason is None:
                    due = self._handled(stream, stream.waiting.popleft())
                    if due is not None:
                        yield due
                if not stream.waiting:
                    stream.waiting = None
            yield StreamEvent("end", reason=stream.end_reason or "closed")
        finally:
            self.close(stream)

    def _handled(self, stream: Stream, event: StreamEvent) -> StreamEvent | None:
        """The event to send for a waiting one, or None when the stream had it already
        (it read it while catching up) or its filter skips it."""
        if event.id is None:
            return event
        if event.id <= stream.cursor:
            return None
        stream.cursor = event.id
        if event.metric is not None and stream.metric_type not in (None, event.metric.metric_type):
            return None
        return event

    async def _catch_up(self, stream: Stream) -> AsyncIterator[StreamEvent]:
        """What the stream missed before it opened (a resume): read from the table."""
        if stream.cursor >= stream.opened_at_id:
            return
        count, last = await self.feed.count_after(stream.user_id, stream.cursor)
        if count > CATCH_UP_LIMIT:
            stream.cursor = last
            yield StreamEvent("backfill", id=last, count=count)
            return
        while True:
            rows = await self.feed.metrics_after(
                stream.user_id, stream.cursor, through=None, limit=PAGE
            )
            for metric in rows:
                event = self._handled(stream, StreamEvent("metric", id=metric.id, metric=metric))
                if event is not None:
                    yield event
            if len(rows) < PAGE:
                return

    async def _unfollow(self, user_id: UUID) -> None:
        try:
            await self.feed.unfollow(user_id)
        except Exception:  # the database went away: the row is swept with its listener
            log.warning("live.unfollow_failed", exc_info=True)

    # --- the feed --------------------------------------------------------------------

    async def _await_listening(self) -> None:
        """Start following the feed (the first stream does), and wait until it listens."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(asyncio.shield(self._listening.wait()), READY_TIMEOUT)
        except TimeoutError:
            raise Unavailable(
                "the live stream cannot reach the database; try again shortly", retry_after=5
            ) from None

    async def stop(self) -> None:
        """End every stream and stop following the feed."""
        self.end_all("shutting down")
        # Cancelled again until it ends: 3.11's wait_for can drop a cancel that
        # lands as its inner future completes (the caller bounds the whole stop).
        while self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=0.1)
        if self._task is not None and not self._task.cancelled():
            self._task.result()  # an error it ended with, raised to the caller

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._keep_time())
            while True:
                try:
                    await self._follow_feed()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a fault of the feed's own: start over, in a second
                    log.exception("live.feed_failed")
                    await asyncio.sleep(1.0)

    async def _follow_feed(self) -> None:
        async for notice in self.feed.notices():
            if isinstance(notice, MetricsAdded):
                follower = self._followers.get(notice.user_id)
                if follower is not None:
                    follower.pending.append(notice)
                    self._kick(notice.user_id, follower)
            elif isinstance(notice, AccessEnded):
                self._end_grant(notice.grant, "access ended")
            else:
                if notice.resumed or self._listened_before:
                    await self._resync()
                self._listened_before = True
                self._listening.set()

    async def _resync(self) -> None:
        """After a lost connection: end the streams whose grant ended meanwhile, and
        read every followed user's rows from where they were."""
        log.info("live.resync", extra={"streams": self.open_streams()})
        live = await self.feed.live_grants(list(self._by_grant), self.clock.now())
        for grant in [g for g in self._by_grant if g not in live]:
            self._end_grant(grant, "access ended")
        for user_id, follower in list(self._followers.items()):
            follower.resync = True
            self._kick(user_id, follower)

    def _end_grant(self, grant: GrantId, reason: str) -> None:
        for stream in list(self._by_grant.get(grant, ())):
            stream.end(reason)

    async def _keep_time(self) -> None:
        """End the streams whose grant expired, and send heartbeats, each ``tick``."""
        since_heartbeat = 0.0
        while True:
            await asyncio.sleep(self.tick)
            now = self.clock.now()
            since_heartbeat += self.tick
            beat = since_heartbeat >= self.heartbeat
            if beat:
                since_heartbeat = 0.0
            for follower in list(self._followers.values()):
                for stream in list(follower.streams):
                    expires = stream.grant.expires_at
                    if expires is not None and now >= expires:
                        stream.end("access expired")
                    elif beat:
                        stream.offer((_HEARTBEAT,))

    # --- reading each followed user's new rows -----------------------------------------

    def _kick(self, user_id: UUID, follower: _Follower) -> None:
        if follower.task is None or follower.task.done():
            follower.task = asyncio.get_running_loop().create_task(self._read(user_id, follower))

    async def _read(self, user_id: UUID, follower: _Follower) -> None:
        try:
            while follower.resync or follower.pending:
                if follower.resync:
                    follower.resync = False
                    follower.pending.clear()
                    await self._read_all_after(user_id, follower)
                    continue
                note = follower.pending.popleft()
                if note.last_id <= follower.fetched:
                    continue
                if note.count > LIVE_LIMIT:
                    await self._read_rows(user_id, follower, through=note.first_id - 1)
                    follower.fetched = note.last_id
                    self._offer(
                        follower, [StreamEvent("backfill", id=note.last_id, count=note.count)]
                    )
                    continue
                through = note.last_id
                while follower.pending and follower.pending[0].count <= LIVE_LIMIT:
                    through = max(through, follower.pending.popleft().last_id)
                await self._read_rows(user_id, follower, through=through)
                follower.fetched = max(follower.fetched, through)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database went away mid-read: the feed's resync will follow
            log.warning("live.read_failed", exc_info=True, extra={"user_id": str(user_id)})
            follower.resync = True
            await asyncio.sleep(1.0)
            if follower.streams:
                follower.task = None
                self._kick(user_id, follower)

    async def _read_all_after(self, user_id: UUID, follower: _Follower) -> None:
        count, last = await self.feed.count_after(user_id, follower.fetched)
        if count > CATCH_UP_LIMIT:
            follower.fetched = last
            self._offer(follower, [StreamEvent("backfill", id=last, count=count)])
        elif count:
            await self._read_rows(user_id, follower, through=last)
            follower.fetched = max(follower.fetched, last)

    async def _read_rows(self, user_id: UUID, follower: _Follower, *, through: int) -> None:
        after = follower.fetched
        while after < through:
            rows = await self.feed.metrics_after(user_id, after, through=through, limit=PAGE)
            if not rows:
                return
            self._offer(follower, [StreamEvent("metric", id=m.id, metric=m) for m in rows])
            after = rows[-1].id
            follower.fetched = max(follower.fetched, after)
            if len(rows) < PAGE:
                return

    @staticmethod
    def _offer(follower: _Follower, events: list[StreamEvent]) -> None:
        for stream in list(follower.streams):
            stream.offer(events)

    # --- shutting down -----------------------------------------------------------------

    def end_all(self, reason: str) -> None:
        for follower in list(self._followers.values()):
            for stream in list(follower.streams):
                stream.end(reason)
