"""Dashboard reads cached per user, made fresh by versions rather than by TTL guesses.

The first page of a user's metrics (no cursor) and their summaries are kept in
the cache under a key that names:

- the user;
- the user's *version*: a random token that every write by that user throws
  away (the next read draws a new one), so the write's next read is fresh;
- the *generation* of every dashboard: a token that bulk loads throw away,
  since they write for many users at once;
- the whole query (every filter, the page size, the bucket and time zone).

A key can only ever name one user's data, and the entry repeats the user and
the query, checked on every read. Tokens are random rather than counters so
that one lost or evicted can never bring back a stale entry: a new one never
matches an old key. Entries expire only to bound the memory they take.

Use it only over a cache that every process shares (Redis): a version thrown
away in one process's private cache leaves stale entries in the others'. How an
entry is written as bytes is the ``DashboardCodec``'s business (an adapter's).
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs
from attrs import define, field

from engage_core.model import EngagementMetric, MetricDraft
from engage_core.ports import (
    BulkMetricStore,
    Cache,
    DashboardCodec,
    DashboardEntry,
    ExportedMetric,
    LoadOutcome,
    MetricRepository,
    StagedMetric,
    UnitOfWork,
)
from engage_core.queries import MetricPageQuery, Series, SummaryQuery

__all__ = [
    "CachedMetricRepository",
    "DashboardCache",
    "InvalidatingBulkStore",
    "Lookup",
]

T = TypeVar("T")
ENTRY_TTL = 300.0
VERSION_TTL = 86_400.0
_GENERATION_KEY = "dashboard-generation"


class Lookup(enum.StrEnum):
    """How a dashboard read was served."""

    HIT = "hit"  # from the cache
    MISS = "miss"  # from the repository, then cached
    BYPASS = "bypass"  # from the repository; the cache could not be used


LookupObserver = Callable[[str, Lookup], None]  # (kind: "page" | "summary", outcome)


def _moment(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


# A query in words: every part of it, as the repr of a tuple of strings and numbers
# (unambiguous, and the same in every process).
def _page_query(query: MetricPageQuery) -> str:
    kind = query.metric_type.value if query.metric_type else ""
    return repr(("page", kind, _moment(query.since), _moment(query.until), query.limit))


def _summary_query(query: SummaryQuery) -> str:
    kind = query.metric_type.value if query.metric_type else ""
    parts = ("summary", query.bucket.value, query.tz.key, _moment(query.since))
    return repr((*parts, _moment(query.until), kind))


def _in_zone(series: Sequence[Series], tz: ZoneInfo) -> Sequence[Series]:
    """The series with every bucket start in ``tz``, as the repository gave them."""
    return tuple(
        attrs.evolve(
            s, points=tuple(attrs.evolve(p, start=p.start.astimezone(tz)) for p in s.points)
        )
        for s in series
    )


@define
class DashboardCache:
    """Read-through caching of dashboard reads over the ``Cache`` port, its entries
    written and read by ``codec``."""

    cache: Cache
    codec: DashboardCodec
    entry_ttl: float = ENTRY_TTL
    version_ttl: float = VERSION_TTL
    observers: list[LookupObserver] = field(factory=list)

    async def page(
        self,
        user_id: UUID,
        query: MetricPageQuery,
        load: Callable[[], Awaitable[Sequence[EngagementMetric]]],
    ) -> Sequence[EngagementMetric]:
        """The first page ``load`` reads for ``query``, from the cache when it holds it."""
        return await self._read_through(
            "page",
            user_id,
            _page_query(query),
            load,
            encode=self.codec.encode_page,
            decode=self.codec.decode_page,
        )

    async def summary(
        self,
        user_id: UUID,
        query: SummaryQuery,
        load: Callable[[], Awaitable[Sequence[Series]]],
    ) -> Sequence[Series]:
        """The series ``load`` computes for ``query``, from the cache when it holds them."""
        series = await self._read_through(
            "summary",
            user_id,
            _summary_query(query),
            load,
            encode=self.codec.encode_summary,
            decode=self.codec.decode_summary,
        )
        # Whatever the codec kept of their zone, bucket starts are in the query's.
        return _in_zone(series, query.tz)

    async def user_wrote(self, user_id: UUID) -> None:
        """Make the user's next dashboard reads fresh, in every process."""
        await self.cache.delete(_version_key(user_id))

    async def everyone_wrote(self) -> None:
        """Make every user's next dashboard reads fresh (after a bulk load)."""
        await self.cache.delete(_GENERATION_KEY)

    async def _read_through(
        self,
        kind: str,
        user_id: UUID,
        query: str,
        load: Callable[[], Awaitable[T]],
        *,
        encode: Callable[[DashboardEntry[T]], bytes],
        decode: Callable[[bytes], DashboardEntry[T] | None],
    ) -> T:
        generation = await self._token(_GENERATION_KEY)
        version = await self._token(_version_key(user_id)) if generation else None
        if generation is None or version is None:
            self._observe(kind, Lookup.BYPASS)
            return await load()
        digest = hashlib.sha256(query.encode("utf-8")).hexdigest()
        key = f"dashboard:{user_id}:{generation}:{version}:{kind}:{digest}"
        held = await self.cache.get(key)
        cached = decode(held) if held is not None else None
        # Only an entry for exactly this user and query is served, whatever its key.
        if cached is not None and cached.user_id == user_id and cached.query == query:
            self._observe(kind, Lookup.HIT)
            return cached.data
        fresh = await load()
        await self.cache.set(key, encode(DashboardEntry(user_id, query, fresh)), ttl=self.entry_ttl)
        self._observe(kind, Lookup.MISS)
        return fresh

    async def _token(self, key: str) -> str | None:
        """The token under ``key``, drawn now if there is none; None when the
        cache keeps nothing (it is unavailable)."""
        held = await self.cache.get(key)
        if held is None:
            drawn = secrets.token_hex(16)
            if await self.cache.set(
                key, drawn.encode("ascii"), ttl=self.version_ttl, only_if_absent=True
            ):
                return drawn
            held = await self.cache.get(key)  # another process drew one first
        return held.decode("ascii") if held is not None else None

    def _observe(self, kind: str, outcome: Lookup) -> None:
        for observer in self.observers:
            observer(kind, outcome)


def _version_key(user_id: UUID) -> str:
    return f"dashboard-version:{user_id}"


@define
class CachedMetricRepository:
    """A ``MetricRepository`` whose dashboard reads go through a ``DashboardCache``
    and whose writes make the writer's next reads fresh.

    A write inside a unit of work (``uow``) is fresh twice: at once, and again
    when the unit commits, since another request's read in between could not
    see it yet and cached what it saw."""

    metrics: MetricRepository
    dashboards: DashboardCache
    uow: UnitOfWork | None = None

    async def add(self, user_id: UUID, draft: MetricDraft) -> EngagementMetric:
        try:
            return await self.metrics.add(user_id, draft)
        finally:  # even on an error: it may have come after the commit
            await self._wrote(user_id)

    async def add_many(self, user_id: UUID, drafts: Sequence[MetricDraft]) -> int:
        try:
            return await self.metrics.add_many(user_id, drafts)
        finally:
            await self._wrote(user_id)

    async def _wrote(self, user_id: UUID) -> None:
        if self.uow is None:
            await self.dashboards.user_wrote(user_id)
            return
        ran_at_once = False

        async def fresh() -> None:
            nonlocal ran_at_once
            ran_at_once = True
            await self.dashboards.user_wrote(user_id)

        await self.uow.after_commit(fresh)  # outside a unit it runs at once: once is enough
        if not ran_at_once:  # in a unit: now too, in case the commit's reply is lost
            await self.dashboards.user_wrote(user_id)

    async def page(self, user_id: UUID, query: MetricPageQuery) -> Sequence[EngagementMetric]:
        if query.after is not None:  # later pages: rarely read twice
            return await self.metrics.page(user_id, query)
        return await self.dashboards.page(user_id, query, lambda: self.metrics.page(user_id, query))

    async def summarize(self, user_id: UUID, query: SummaryQuery) -> Sequence[Series]:
        return await self.dashboards.summary(
            user_id, query, lambda: self.metrics.summarize(user_id, query)
        )


@define
class InvalidatingBulkStore:
    """A ``BulkMetricStore`` after whose loads every dashboard reads fresh."""

    store: BulkMetricStore
    dashboards: DashboardCache

    async def load(
        self, rows: Iterable[StagedMetric], *, commit: Callable[[], bool]
    ) -> LoadOutcome:
        try:
            return await self.store.load(rows, commit=commit)
        finally:
            await self.dashboards.everyone_wrote()

    def export(
        self, *, user_id: UUID | None, since: datetime | None, until: datetime | None
    ) -> AsyncGenerator[ExportedMetric, None]:
        return self.store.export(user_id=user_id, since=since, until=until)
