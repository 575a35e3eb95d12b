"""What each worker's background tasks (the mail sender, the purge) log while the
database is away: the outage once, in words, with no traceback, and not once
per round; a bug's error still every time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import pytest
from psycopg_pool import PoolTimeout

from engage_adapters.bootstrap import Services
from engage_adapters.mail import sender
from engage_adapters.mail.sender import MailSender
from engage_core import testing
from engage_core.services.mail_delivery import DeliveryRound, MailDelivery
from engage_http import upkeep

AWAY = PoolTimeout("couldn't get a connection after 2.00 sec")


class Rounds:
    """``deliver_due`` raising each of ``failures`` in turn, then delivering nothing;
    ``done`` is set once it has run ``until`` rounds."""

    def __init__(self, *failures: Exception, until: int) -> None:
        self._failures = list(failures)
        self._until = until
        self.rounds = 0
        self.done = asyncio.Event()

    async def deliver_due(self, *, stopping: Callable[[], bool]) -> DeliveryRound:
        self.rounds += 1
        if self.rounds >= self._until:
            self.done.set()
        if self._failures:
            raise self._failures.pop(0)
        return DeliveryRound(attempts=[], full=False)


def said(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(event)]


async def test_the_mail_sender_says_the_database_is_away_once_and_when_it_is_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender, "ERROR_PAUSE", 0.01)
    caplog.set_level(logging.INFO, logger="engage.mail")
    bug = RuntimeError("a bug")
    rounds = Rounds(AWAY, AWAY, bug, AWAY, AWAY, until=7)
    mail_sender = MailSender(cast(MailDelivery, rounds), testing.FakeClock(), poll_interval=0.01)

    async with mail_sender.running(), asyncio.timeout(5):
        await rounds.done.wait()

    errors = [r.getMessage() for r in said(caplog, "mail.sender_error")]
    assert len(errors) == 2, errors  # the outage once, the bug's error too
    assert errors[0].startswith("mail.sender_error error=PoolTimeout: couldn't get a connection")
    assert errors[1] == "mail.sender_error error=RuntimeError: a bug"
    [resumed] = said(caplog, "mail.sender_resumed")
    assert resumed.getMessage() == "mail.sender_resumed after 4 rounds the database missed"
    assert not any(r.exc_info for r in caplog.records)


async def test_a_purge_the_database_missed_is_one_line_with_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="engage.upkeep")
    rounds, two = 0, asyncio.Event()

    async def purge_expired() -> dict[str, Any]:
        nonlocal rounds
        rounds += 1
        if rounds == 2:
            two.set()
        raise AWAY if rounds == 1 else ValueError("a bug")

    services = cast(Services, type("Stub", (), {"purge_expired": staticmethod(purge_expired)}))
    task = asyncio.create_task(upkeep.purge_forever(services, every=0.01))
    async with asyncio.timeout(5):
        await two.wait()  # the second round has failed, and said so, in the same step
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    outage, bug = said(caplog, "upkeep.purge_failed")[:2]
    assert outage.getMessage().startswith(
        'upkeep.purge_failed reason="couldn\'t get a connection after 2.00 sec"'
    )
    assert outage.exc_info is None
    assert bug.exc_info is not None  # a bug keeps its traceback
