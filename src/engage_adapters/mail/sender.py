"""The sender: a task in each ``engage serve`` worker that delivers the outbox.

It wakes when this process queues a message (after its transaction commits),
when a retry falls due, and every ``poll_interval`` seconds for what other
processes queued. Senders in many workers share the work: each message is
claimed by one of them only (``MailQueue.claim``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from engage_adapters.closing import stop_task
from engage_adapters.postgres.outage import unavailable_from
from engage_core.ports import Clock, MailStatus
from engage_core.services.mail_delivery import DeliveryRound, MailDelivery

log = logging.getLogger("engage.mail")
POLL_INTERVAL = 5.0
# After an error (the database down), wait this long before trying again.
ERROR_PAUSE = 2.0
# How long a stopping sender may take to finish the message it is sending (its mail
# server's answer, then marking it sent); cut short, that message waits out its
# lease (5 minutes) before another sender takes it.
FINISH_WITHIN = 5.0


class MailSender:
    def __init__(
        self, delivery: MailDelivery, clock: Clock, *, poll_interval: float = POLL_INTERVAL
    ) -> None:
        self._delivery = delivery
        self._clock = clock
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Deliver now: something was queued."""
        self._wake.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Deliver in the background for as long as the block lasts; on the way out, the
        message being sent is finished (``FINISH_WITHIN`` at most), no other begun."""
        self._stopping = False
        task = asyncio.get_running_loop().create_task(self._run(), name="engage-mail-sender")
        try:
            yield
        finally:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait({task}, timeout=FINISH_WITHIN)
            finally:
                await stop_task("mail sender", task)

    def _stopped(self) -> bool:
        return self._stopping

    async def _run(self) -> None:
        # Rounds failed in a row because the database is away: said once, at the first.
        away = 0
        while not self._stopping:
            self._wake.clear()
            try:
                done = await self._delivery.deliver_due(stopping=self._stopped)
            except Exception as exc:  # the loop must outlive any one failure
                outage = unavailable_from(exc) is not None
                if not outage:
                    log.warning("mail.sender_error error=%s: %s", type(exc).__name__, exc)
                elif not away:
                    log.warning(
                        "mail.sender_error error=%s: %s (the database is away: tried again"
                        " every %g s, said again once it answers)",
                        type(exc).__name__,
                        exc,
                        ERROR_PAUSE,
                    )
                away += outage
                pause = ERROR_PAUSE
            else:
                if away:
                    log.warning("mail.sender_resumed after %d rounds the database missed", away)
                    away = 0
                _log(done)
                pause = 0.0 if done.full else self._pause_after(done)
            if pause > 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=pause)

    def _pause_after(self, done: DeliveryRound) -> float:
        pause = self._poll_interval
        if done.next_retry is not None:
            until_retry = (done.next_retry - self._clock.now()).total_seconds()
            pause = min(pause, max(until_retry, 0.01))
        return pause


def _log(done: DeliveryRound) -> None:
    for attempt in done.attempts:
        message = attempt.mail.message
        if attempt.outcome is MailStatus.SENT:
            log.info(
                "mail.sent id=%s to=%s subject=%r receipt=%r",
                message.id,
                message.to.value,
                message.subject,
                attempt.detail,
            )
        else:
            log.warning(
                "mail.not_sent id=%s to=%s attempt=%d outcome=%s retry_at=%s error=%r",
                message.id,
                message.to.value,
                attempt.mail.attempts,
                attempt.outcome.value,
                attempt.retry_at.isoformat() if attempt.retry_at else "-",
                attempt.detail,
            )
