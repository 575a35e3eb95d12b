"""The live stream's feed over the in-memory repositories."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from uuid import UUID

from engage_core.model import EngagementMetric, GrantId
from engage_core.ports import AccessEnded, Listening, MetricsAdded, Notice
from engage_core.testing.storage import (
    InMemoryApiKeyRepository,
    InMemoryMetricRepository,
    InMemorySessionRepository,
)

__all__ = ["InMemoryMetricFeed"]


class InMemoryMetricFeed:
    """The live stream's feed over the fakes: told by the repositories as they
    write (before a unit of work commits: the fakes have no commit to wait for)."""

    def __init__(
        self,
        metrics: InMemoryMetricRepository,
        sessions: InMemorySessionRepository,
        keys: InMemoryApiKeyRepository,
    ) -> None:
        self._metrics = metrics
        self._sessions = sessions
        self._keys = keys
        self._listeners: list[asyncio.Queue[Notice]] = []
        self._streams: dict[UUID, int] = {}  # followed users: how many streams each
        metrics.on_added.append(lambda m: self._tell(MetricsAdded(m.user_id, m.id, m.id, 1)))
        sessions.on_ended.append(
            lambda s: (
                self._tell(AccessEnded(GrantId("family", s.family_id)))
                if s.end_reason != "rotated"
                else None
            )
        )
        keys.on_revoked.append(lambda k: self._tell(AccessEnded(GrantId("key", k.id))))

    def _tell(self, notice: Notice) -> None:
        for queue in self._listeners:
            queue.put_nowait(notice)

    def lose_connection(self) -> None:
        """As if the listening connection dropped and came back: what it would have
        said meanwhile is lost, and it says ``Listening(resumed=True)``."""
        for queue in self._listeners:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(Listening(resumed=True))

    async def notices(self) -> AsyncIterator[Notice]:
        queue: asyncio.Queue[Notice] = asyncio.Queue()
        self._listeners.append(queue)
        try:
            yield Listening(resumed=False)
            while True:
                yield await queue.get()
        finally:
            self._listeners.remove(queue)

    def _rows(self, user_id: UUID) -> list[EngagementMetric]:
        return sorted(self._metrics.stored().get(user_id, []), key=lambda m: m.id)

    async def follow(self, user_id: UUID) -> int:
        # Told of every write anyway (telling costs nothing here); the storage is
        # this process's, so its streams are all there are.
        self._streams[user_id] = self._streams.get(user_id, 0) + 1
        return self._streams[user_id]

    async def unfollow(self, user_id: UUID) -> None:
        left = self._streams.get(user_id, 0) - 1
        if left > 0:
            self._streams[user_id] = left
        else:
            self._streams.pop(user_id, None)

    async def position(self, user_id: UUID) -> int:
        return max((m.id for rows in self._metrics.stored().values() for m in rows), default=0)

    async def metrics_after(
        self, user_id: UUID, after: int, *, through: int | None, limit: int
    ) -> Sequence[EngagementMetric]:
        rows = [
            m for m in self._rows(user_id) if m.id > after and (through is None or m.id <= through)
        ]
        return rows[:limit]

    async def count_after(self, user_id: UUID, after: int) -> tuple[int, int]:
        rows = [m for m in self._rows(user_id) if m.id > after]
        return len(rows), rows[-1].id if rows else after

    async def live_grants(self, grants: Collection[GrantId], at: datetime) -> set[GrantId]:
        live = set()
        for grant in grants:
            if grant.kind == "key":
                key = await self._keys.get(grant.id)
                if key is not None and key.is_usable(at):
                    live.add(grant)
            elif any(
                s.family_id == grant.id and s.is_live(at) for s in self._sessions._by_id.values()
            ):
                live.add(grant)
        return live
