"""The app's shutdown ends, whatever a close does: a task that misses its cancel
is cancelled again, and a close that never finishes is cut after CLOSE_TIMEOUT
with a warning naming it.

The mail sender is the case seen: Python 3.11's ``asyncio.wait_for`` (aiosmtplib
awaits every reply with it) drops a cancel that lands as its inner future
completes, and the sender then kept delivering while the shutdown awaited it.
Each test carries a bound on the whole shutdown so that a regression fails
instead of hanging the run; the bound is far above what it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from engage_adapters import closing
from engage_adapters.bootstrap import HttpPolicy, Services, build_services
from engage_adapters.mail import sender
from engage_adapters.settings import Settings
from engage_core.ports import MailMessage, MailStatus, PasswordHasher
from engage_http.app import create_app

# Far above what a shutdown takes; only there so that a hang fails.
HANG = 10.0


@pytest.fixture
def quick_to_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A send that never ends is given 0.2 s to finish, not FINISH_WITHIN."""
    monkeypatch.setattr(sender, "FINISH_WITHIN", 0.2)


class CancelMissingMailer:
    """Takes mail slowly and misses the first cancel of each send; or, ``stuck``,
    every cancel until ``release()``."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.stuck = stuck
        self.sending = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def send(self, message: MailMessage) -> str:
        self.sending.set()
        missed = 0
        while not self._released.is_set():
            try:
                await self._released.wait()
            except asyncio.CancelledError:
                missed += 1
                if not self.stuck and missed > 1:
                    raise
        return "250 taken"


class SlowMailer:
    """A mail server that takes ``seconds`` to answer each message."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sending = asyncio.Event()
        self.taken: list[str] = []

    def release(self) -> None:
        pass

    async def send(self, message: MailMessage) -> str:
        self.sending.set()
        await asyncio.sleep(self.seconds)
        self.taken.append(message.to.value)
        return "250 taken"


async def sign_up_and_stop(
    mailer: CancelMissingMailer | SlowMailer,
    settings: Settings,
    policy: HttpPolicy,
    hasher: PasswordHasher,
    built: list[Services] | None = None,
) -> None:
    """Sign up (a verification mail is queued) and stop the app while the mail is
    being sent; fail if the stop has not ended after HANG seconds. The services the
    app built go into ``built``.

    The app's lifespan runs in this loop (AsyncTestClient runs it in a thread of
    its own and blocks this loop on its shutdown: a hang could not fail), and the
    bound waits without cancelling (the code under test could swallow a cancel)."""

    @contextlib.asynccontextmanager
    async def services() -> AsyncIterator[Services]:
        async with build_services(settings, storage="memory", hasher=hasher, mailer=mailer) as s:
            (built if built is not None else []).append(s)
            yield s

    app = create_app(services, policy)

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.lifespan(),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        ):
            body = {"email": "ada@example.com", "password": "correct horse battery staple"}
            assert (await client.post("/api/auth/signup", json=body)).status_code == 201
            await mailer.sending.wait()

    running = asyncio.ensure_future(run())
    done, _ = await asyncio.wait({running}, timeout=HANG)
    if not done:
        mailer.release()
        running.cancel()
        pytest.fail(f"the app's shutdown had not ended after {HANG} s")
    running.result()


async def test_a_mail_being_sent_as_the_app_stops_is_finished_not_left_to_its_lease(
    settings: Settings, policy: HttpPolicy, hasher: PasswordHasher
) -> None:
    mailer = SlowMailer(0.3)
    built: list[Services] = []

    await sign_up_and_stop(mailer, settings, policy, hasher, built)

    assert mailer.taken == ["ada@example.com"]
    [queued] = await built[0].mail.recent()
    assert queued.status is MailStatus.SENT  # not claimed for 5 minutes, to be sent again


@pytest.mark.usefixtures("quick_to_give_up")
async def test_a_mail_sender_that_misses_its_cancel_is_stopped_all_the_same(
    settings: Settings,
    policy: HttpPolicy,
    hasher: PasswordHasher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailer = CancelMissingMailer()

    await sign_up_and_stop(mailer, settings, policy, hasher)

    assert [r for r in caplog.records if r.name == "engage.shutdown"] == []


@pytest.mark.usefixtures("quick_to_give_up")
async def test_a_stuck_mail_sender_cannot_hang_the_shutdown(
    settings: Settings,
    policy: HttpPolicy,
    hasher: PasswordHasher,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(closing, "CLOSE_TIMEOUT", 0.5)
    caplog.set_level(logging.WARNING, logger="engage.shutdown")
    mailer = CancelMissingMailer(stuck=True)

    try:
        await sign_up_and_stop(mailer, settings, policy, hasher)
    finally:
        mailer.release()  # the abandoned send ends with the test

    [warning] = [r for r in caplog.records if r.name == "engage.shutdown"]
    assert (warning.getMessage(), warning.task) == ("shutdown.task_left_running", "mail sender")  # type: ignore[attr-defined]


async def test_a_close_that_never_finishes_is_cut_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="engage.shutdown")
    released = asyncio.Event()
    ended = []

    async def close_that_hangs() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue  # as a close that swallows its cancel would
        ended.append(True)

    closed = asyncio.ensure_future(closing.close_within("database pool", close_that_hangs, 0.2))
    done, _ = await asyncio.wait({closed}, timeout=HANG)
    assert done, "close_within waited for a close that does not end"

    [warning] = [r for r in caplog.records if r.name == "engage.shutdown"]
    assert (warning.getMessage(), warning.close) == ("shutdown.close_cut", "database pool")  # type: ignore[attr-defined]
    assert ended == []
    released.set()
    await asyncio.sleep(0)


async def test_a_close_that_fails_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async def failing_close() -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        await closing.close_within("redis client", failing_close, within=5)
