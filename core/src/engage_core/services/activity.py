"""The activity log: an append-only record of auth events, for users and operators.

Each entry is written in the same unit of work as the change it records, so a
change that rolls back leaves no entry behind. Entries hold the kind, the
time, the client's address and user agent, and never a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from attrs import define, frozen

from engage_core.errors import ValidationFailed
from engage_core.model import ActivityEntry, ActivityKind, Client, Email, User
from engage_core.ports import ActivityQuery, ActivityRepository, Clock
from engage_core.queries import DEFAULT_PAGE_LIMIT, CursorCodec, Position, check_limit

__all__ = [
    "ActivityLog",
    "ActivityPage",
    "check_kind",
]


@frozen(kw_only=True)
class ActivityPage:
    items: tuple[ActivityEntry, ...]
    next_cursor: str | None


def check_kind(raw: object) -> ActivityKind:
    if isinstance(raw, str) and raw in ActivityKind.__members__.values():
        return ActivityKind(raw)
    raise ValidationFailed.single(
        "kind", "must be one of " + ", ".join(kind.value for kind in ActivityKind)
    )


@define
class ActivityLog:
    entries: ActivityRepository
    clock: Clock
    cursors: CursorCodec
    retention_days: int = 90

    async def record(
        self,
        kind: ActivityKind,
        *,
        client: Client,
        user: User | None = None,
        email: Email | None = None,
    ) -> None:
        """Add an entry about ``user`` (or, with no user, about an email no account has)."""
        address = user.email if user is not None else email
        await self.entries.add(
            ActivityEntry(
                kind=kind,
                at=self.clock.now(),
                user_id=user.id if user is not None else None,
                email=address.canonical if address is not None else None,
                client=client,
            )
        )

    async def page_for(
        self, user_id: UUID, *, limit: object = None, cursor: object = None
    ) -> ActivityPage:
        """A page of the user's own activity, newest first, and the next page's cursor."""
        size = DEFAULT_PAGE_LIMIT if limit is None else check_limit(limit)
        scope = f"activity:{user_id}"
        after = None
        if cursor is not None:
            if not isinstance(cursor, str):
                raise ValidationFailed.single("cursor", "is not a cursor this server issued")
            position = self.cursors.decode(cursor, scope=scope)
            after = (position.recorded_at, position.id)
        # One more than asked: whether a next page exists, without a second query.
        found = await self.entries.page(ActivityQuery(user_id=user_id, limit=size + 1, after=after))
        items = tuple(found[:size])
        next_cursor = None
        if len(found) > size:
            last = items[-1]
            next_cursor = self.cursors.encode(Position(last.at, last.id), scope=scope)
        return ActivityPage(items=items, next_cursor=next_cursor)

    async def search(
        self,
        *,
        email: Email | None = None,
        kind: ActivityKind | None = None,
        since: datetime | None = None,
        limit: int = 500,
        after: tuple[datetime, int] | None = None,
    ) -> Sequence[ActivityEntry]:
        """Every user's activity, newest first, for operators: by the address it
        concerned (an account's, or one no account has), kind and time."""
        return await self.entries.page(
            ActivityQuery(
                email=email.canonical if email is not None else None,
                kind=kind,
                since=since,
                limit=limit,
                after=after,
            )
        )

    async def purge_expired(self) -> int:
        """Delete what is older than the retention period; how many entries."""
        return await self.entries.purge(self.clock.now() - timedelta(days=self.retention_days))
