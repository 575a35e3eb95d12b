"""Delivering the outbox: claim what is due, send it, record how it went.

A failed attempt is retried after ``first_retry``, doubled each time up to
``max_retry``; after ``max_attempts`` (or a refusal that retrying cannot help)
the message is ``failed`` and waits for ``engage mail retry``. Nothing is
dropped: the message stays in the outbox in every case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from uuid import UUID

from attrs import define, field, frozen

from engage_core.ports import Clock, Mailer, MailNotSent, MailQueue, MailStatus, QueuedMail

__all__ = [
    "Attempt",
    "DeliveryPolicy",
    "DeliveryRound",
    "MailDelivery",
]


@frozen(kw_only=True)
class DeliveryPolicy:
    first_retry: timedelta = timedelta(seconds=30)
    max_retry: timedelta = timedelta(hours=1)
    max_attempts: int = 12
    # How long a claimed message is hidden from other senders while this one sends it.
    lease: timedelta = timedelta(minutes=5)
    batch: int = 20


@frozen(kw_only=True)
class Attempt:
    """What one delivery attempt came to."""

    mail: QueuedMail
    outcome: MailStatus  # sent, queued (to be retried) or failed
    detail: str  # the receipt, or why it failed
    retry_at: datetime | None = None


@frozen(kw_only=True)
class DeliveryRound:
    attempts: Sequence[Attempt]
    full: bool  # a whole batch was claimed: more may be due

    @property
    def next_retry(self) -> datetime | None:
        retries = [a.retry_at for a in self.attempts if a.retry_at is not None]
        return min(retries, default=None)


@define
class MailDelivery:
    outbox: MailQueue
    mailer: Mailer
    clock: Clock
    policy: DeliveryPolicy = DeliveryPolicy()
    # Messages the mail server took whose "sent" could not be recorded (the
    # database away): (id, when, receipt), recorded before anything more is claimed.
    _unrecorded: list[tuple[UUID, datetime, str]] = field(factory=list, init=False)

    def retry_delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt."""
        delay = self.policy.first_retry * (1 << min(max(attempts - 1, 0), 30))
        return min(delay, self.policy.max_retry)

    async def deliver_due(self, *, stopping: Callable[[], bool] = lambda: False) -> DeliveryRound:
        """Send the messages due now (up to one batch), each exactly once among all senders;
        none more once ``stopping()`` says so (the one being sent is finished).

        Each message is claimed just before it is sent: a lease taken for a whole
        batch would run out while a slow mail server takes the first ones, and
        another sender would then claim (and send) the rest a second time.

        A message sent whose record failed (the database gone meanwhile) is not
        sent again: its "sent" is recorded first thing next round (what failed
        is raised until then), while its claim still hides it from other senders."""
        await self._record_unrecorded()
        attempts: list[Attempt] = []
        while len(attempts) < self.policy.batch and not stopping():
            claimed = await self.outbox.claim(self.clock.now(), limit=1, lease=self.policy.lease)
            if not claimed:
                break
            attempts.append(await self._attempt(claimed[0]))
        return DeliveryRound(attempts=attempts, full=len(attempts) == self.policy.batch)

    async def _attempt(self, mail: QueuedMail) -> Attempt:
        message_id = mail.message.id
        try:
            receipt = await self.mailer.send(mail.message)
        except MailNotSent as exc:
            now = self.clock.now()
            retry_at = None
            if not exc.permanent and mail.attempts < self.policy.max_attempts:
                retry_at = now + self.retry_delay(mail.attempts)
            await self.outbox.mark_failed(message_id, now, exc.reason, retry_at=retry_at)
            outcome = MailStatus.QUEUED if retry_at else MailStatus.FAILED
            return Attempt(mail=mail, outcome=outcome, detail=exc.reason, retry_at=retry_at)
        sent_at = self.clock.now()
        try:
            await self.outbox.mark_sent(message_id, sent_at, receipt)
        except Exception:
            self._unrecorded.append((message_id, sent_at, receipt))
            raise
        return Attempt(mail=mail, outcome=MailStatus.SENT, detail=receipt)

    async def _record_unrecorded(self) -> None:
        while self._unrecorded:
            message_id, sent_at, receipt = self._unrecorded[0]
            await self.outbox.mark_sent(message_id, sent_at, receipt)
            del self._unrecorded[0]

    async def recent(self, limit: int = 50) -> Sequence[QueuedMail]:
        return await self.outbox.recent(limit=limit)

    async def retry_failed(self) -> int:
        """Give every failed message a fresh set of attempts, due now."""
        return await self.outbox.requeue_failed(self.clock.now())
