"""Mail for tests: the outbox port kept in a dict, and a mailer that keeps what
it is given and fails on demand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import attrs

from engage_core.ports import MailMessage, MailNotSent, MailStatus, QueuedMail

__all__ = ["FakeMailer", "InMemoryMailQueue"]


class InMemoryMailQueue:
    """The outbox in a dict. ``messages()`` lists what was queued, for tests."""

    def __init__(self) -> None:
        self._items: dict[UUID, QueuedMail] = {}

    def checkpoint(self) -> Callable[[], None]:
        items = dict(self._items)  # its values are immutable

        def restore() -> None:
            self._items = items

        return restore

    def messages(self) -> list[MailMessage]:
        """Every message queued, oldest first, whatever its state."""
        return [q.message for q in sorted(self._items.values(), key=lambda q: q.created_at)]

    async def enqueue(self, message: MailMessage, at: datetime) -> None:
        self._items[message.id] = QueuedMail(
            message=message, status=MailStatus.QUEUED, created_at=at, next_attempt_at=at
        )

    async def claim(self, at: datetime, *, limit: int, lease: timedelta) -> Sequence[QueuedMail]:
        due = sorted(
            (
                q
                for q in self._items.values()
                if q.status is MailStatus.QUEUED
                and q.next_attempt_at is not None
                and q.next_attempt_at <= at
            ),
            key=lambda q: (q.next_attempt_at, q.created_at),
        )[:limit]
        claimed = []
        for item in due:
            item = attrs.evolve(item, attempts=item.attempts + 1, next_attempt_at=at + lease)
            self._items[item.message.id] = item
            claimed.append(item)
        return sorted(claimed, key=lambda q: q.created_at)

    async def mark_sent(self, message_id: UUID, at: datetime, receipt: str) -> None:
        item = self._items.get(message_id)
        if item is not None:
            message = attrs.evolve(item.message, text="", html="", link=None)
            self._items[message_id] = attrs.evolve(
                item,
                message=message,
                status=MailStatus.SENT,
                sent_at=at,
                receipt=receipt,
                last_error=None,
            )

    async def mark_failed(
        self, message_id: UUID, at: datetime, error: str, *, retry_at: datetime | None
    ) -> None:
        item = self._items.get(message_id)
        if item is not None:
            self._items[message_id] = attrs.evolve(
                item,
                status=MailStatus.FAILED if retry_at is None else MailStatus.QUEUED,
                next_attempt_at=retry_at or at,
                last_error=error,
            )

    async def recent(self, *, limit: int) -> Sequence[QueuedMail]:
        newest = sorted(self._items.values(), key=lambda q: q.created_at, reverse=True)
        return newest[:limit]

    async def drop_unsent(self, recipient: str) -> int:
        unsent = [
            q.message.id
            for q in self._items.values()
            if q.message.to.value == recipient and q.status is not MailStatus.SENT
        ]
        for message_id in unsent:
            del self._items[message_id]
        return len(unsent)

    async def requeue_failed(self, at: datetime) -> int:
        failed = [q for q in self._items.values() if q.status is MailStatus.FAILED]
        for item in failed:
            self._items[item.message.id] = attrs.evolve(
                item, status=MailStatus.QUEUED, attempts=0, next_attempt_at=at
            )
        return len(failed)


class FakeMailer:
    """The ``Mailer`` port for tests. ``sent`` holds every message taken, in order.
    While ``down`` is set every send fails as a mail server that does not answer
    would; ``refuse`` makes them fail for good (as a 5xx refusal)."""

    def __init__(self) -> None:
        self.sent: list[MailMessage] = []
        self.attempts = 0
        self.down = False
        self.refuse = False

    async def send(self, message: MailMessage) -> str:
        self.attempts += 1
        if self.refuse:
            raise MailNotSent("550 mailbox unavailable", permanent=True)
        if self.down:
            raise MailNotSent("mail server unreachable")
        self.sent.append(message)
        return f"250 queued as {len(self.sent)}"

    def to(self, address: str) -> list[MailMessage]:
        """The messages sent to ``address`` (any letter case), oldest first."""
        return [m for m in self.sent if m.to.canonical == address.lower()]
