"""The Mailer port: the fake, the outbox directory and SMTP (STARTTLS and TLS, against
a real aiosmtpd server on loopback) take a message the same way, and fail the same way."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import gc
import warnings
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from attrs import define

from engage_adapters.mail.outbox import OutboxMailer
from engage_adapters.mail.smtp import SmtpMailer, SmtpServer
from engage_core.model import Email
from engage_core.ports import Mailer, MailMessage, MailNotSent
from engage_core.testing import FakeClock, FakeMailer
from support.smtp_server import LoopbackMailServer, make_certificate

SENDER = "engage-suite <no-reply@engage.example>"


@define
class Delivered:
    to: str
    subject: str
    text: str
    html: str
    headers: EmailMessage | None  # None: the fake keeps no rendered message


def _from_email(message: EmailMessage) -> Delivered:
    def body(subtype: str) -> str:
        part = message.get_body((subtype,))
        assert part is not None
        content: str = part.get_content()  # type: ignore[attr-defined]
        return content.replace("\r\n", "\n")  # SMTP carries lines as CRLF

    return Delivered(
        to=str(message["To"]),
        subject=str(message["Subject"]),
        text=body("plain"),
        html=body("html"),
        headers=message,
    )


@define
class Subject:
    mailer: Mailer
    delivered: Callable[[], list[Delivered]]
    take_down: Callable[[], None]
    bring_up: Callable[[], None]
    refuse: Callable[[str], None] | None = None  # None: this mailer never refuses an address


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[LoopbackMailServer]:
    server = LoopbackMailServer(*certificate, mode="starttls")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_server(certificate: tuple[Path, Path]) -> Iterator[LoopbackMailServer]:
    server = LoopbackMailServer(*certificate, mode="tls")
    server.start()
    yield server
    server.stop()


def _fake() -> Subject:
    fake = FakeMailer()

    def delivered() -> list[Delivered]:
        return [Delivered(m.to.value, m.subject, m.text, m.html, None) for m in fake.sent]

    def down() -> None:
        fake.down = True

    def up() -> None:
        fake.down = False

    def refuse(_: str) -> None:
        fake.refuse = True

    return Subject(fake, delivered, down, up, refuse)


def _outbox(directory: Path, clock: FakeClock) -> Subject:
    aside = directory.with_name("outbox-aside")

    def delivered() -> list[Delivered]:
        files = sorted(directory.glob("*.eml")) if directory.is_dir() else []
        return [
            _from_email(email.message_from_bytes(f.read_bytes(), policy=email.policy.default))  # type: ignore[arg-type]
            for f in files
        ]

    def down() -> None:
        # A file where the directory should be: nothing can be written there.
        if directory.exists():
            directory.rename(aside)
        directory.write_text("not a directory")

    def up() -> None:
        directory.unlink()
        if aside.exists():
            aside.rename(directory)

    return Subject(OutboxMailer(directory, SENDER, clock=clock), delivered, down, up)


def _smtp(server: LoopbackMailServer, clock: FakeClock) -> Subject:
    server.received.clear()
    server.refused.clear()
    mailer = SmtpMailer(
        SmtpServer.parse(server.url()),
        SENDER,
        clock=clock,
        timeout=5.0,
        tls_context=server.client_context(),
    )

    def delivered() -> list[Delivered]:
        for received in server.received:
            # Credentials crossed only an encrypted connection, and were accepted.
            assert received.tls
            assert received.authenticated
        return [_from_email(r.message) for r in server.received]

    return Subject(mailer, delivered, server.stop, server.start, server.refused.add)


@pytest.fixture(params=["fake", "outbox", "smtp-starttls", "smtps"])
def subject(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Subject]:
    if request.param == "fake":
        yield _fake()
    elif request.param == "outbox":
        yield _outbox(tmp_path / "outbox", clock)
    else:
        server = request.getfixturevalue(
            "starttls_server" if request.param == "smtp-starttls" else "tls_server"
        )
        made = _smtp(server, clock)
        yield made
        if server._controller is None:  # a test left it down
            server.start()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _message(to: str = "ada@example.com", **overrides: str) -> MailMessage:
    fields = {
        "subject": "Verify your address — engage-suite",
        "text": "Hello Ada,\n\nopen https://engage.example/verify-email#token=abc\n",
        "html": '<p>Hello Ada,</p><p><a href="https://engage.example/verify-email#token=abc">'
        "Verify</a></p>",
        **overrides,
    }
    return MailMessage(to=Email(to), link="https://engage.example/verify-email#token=abc", **fields)


async def test_a_sent_message_arrives_whole(subject: Subject) -> None:
    message = _message()
    receipt = await subject.mailer.send(message)
    assert receipt
    [got] = subject.delivered()
    assert (got.to, got.subject) == ("ada@example.com", message.subject)
    assert got.text.strip() == message.text.strip()
    assert got.html.strip() == message.html.strip()


async def test_rendered_messages_carry_date_message_id_and_from(
    subject: Subject, clock: FakeClock
) -> None:
    message = _message()
    await subject.mailer.send(message)
    [got] = subject.delivered()
    if got.headers is None:
        pytest.skip("the fake keeps the message, not its rendering")
    assert got.headers["From"] == SENDER
    assert got.headers["Message-ID"] == f"<{message.id}@engage.example>"
    assert parsedate_to_datetime(str(got.headers["Date"])) == clock.now()


async def test_every_message_arrives_in_order(subject: Subject, clock: FakeClock) -> None:
    for number in range(3):
        await subject.mailer.send(_message(f"user{number}@example.com"))
        clock.advance(0.001)
    assert [d.to for d in subject.delivered()] == [f"user{n}@example.com" for n in range(3)]


async def test_an_unreachable_receiver_is_a_failure_worth_retrying(subject: Subject) -> None:
    subject.take_down()
    with pytest.raises(MailNotSent) as failed:
        await subject.mailer.send(_message())
    assert not failed.value.permanent
    assert failed.value.reason
    subject.bring_up()
    await subject.mailer.send(_message())
    assert len(subject.delivered()) == 1


async def test_a_refused_address_is_a_failure_for_good(subject: Subject) -> None:
    if subject.refuse is None:
        pytest.skip("this mailer delivers to any address")
    subject.refuse("nobody@example.com")
    with pytest.raises(MailNotSent) as failed:
        await subject.mailer.send(_message("nobody@example.com"))
    assert failed.value.permanent
    assert subject.delivered() == []


# --- SMTP only ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["smtp-starttls", "smtps"])
def test_a_send_leaves_no_connection_open(
    request: pytest.FixtureRequest, clock: FakeClock, mode: str
) -> None:
    """Delivered or refused, the socket is closed when send returns, even over TLS
    (whose goodbye outlives aiosmtplib's close): a caller's loop may end right then."""
    server = request.getfixturevalue("starttls_server" if mode == "smtp-starttls" else "tls_server")
    subject = _smtp(server, clock)
    server.refused.add("nobody@example.com")
    for to in ["ada@example.com", "nobody@example.com"] * 5:
        loop = asyncio.new_event_loop()
        try:
            with contextlib.suppress(MailNotSent):
                loop.run_until_complete(subject.mailer.send(_message(to)))
        finally:
            loop.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    assert [str(w.message) for w in caught] == []
    server.refused.clear()


async def test_credentials_are_never_sent_without_tls(
    certificate: tuple[Path, Path], clock: FakeClock
) -> None:
    """A server that offers no STARTTLS gets no password: the mail is not sent."""
    plain = LoopbackMailServer(*certificate, mode="plain")
    plain.start()
    try:
        mailer = SmtpMailer(SmtpServer.parse(plain.url()), SENDER, clock=clock, timeout=5.0)
        with pytest.raises(MailNotSent):
            await mailer.send(_message())
        assert plain.received == []
    finally:
        plain.stop()


async def test_without_credentials_starttls_is_used_when_offered(
    starttls_server: LoopbackMailServer, clock: FakeClock
) -> None:
    starttls_server.received.clear()
    mailer = SmtpMailer(
        SmtpServer.parse(starttls_server.url(credentials=False)),
        SENDER,
        clock=clock,
        timeout=5.0,
        tls_context=starttls_server.client_context(),
    )
    await mailer.send(_message())
    [received] = starttls_server.received
    assert received.tls
    assert not received.authenticated


async def test_a_certificate_the_client_does_not_trust_is_refused(
    starttls_server: LoopbackMailServer, clock: FakeClock
) -> None:
    starttls_server.received.clear()
    mailer = SmtpMailer(SmtpServer.parse(starttls_server.url()), SENDER, clock=clock, timeout=5.0)
    with pytest.raises(MailNotSent):
        await mailer.send(_message())
    assert starttls_server.received == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", "smtp://mail.example.com:587"),
        ("smtps://mail.example.com", "smtps://mail.example.com:465"),
        ("smtp://u%40x:p%3Aw@mail.example.com:2525", "smtp://u@x:***@mail.example.com:2525"),
    ],
)
def test_smtp_urls(url: str, expected: str) -> None:
    assert str(SmtpServer.parse(url)) == expected


@pytest.mark.parametrize(
    "url", ["http://mail.example.com", "smtp://", "smtp://u@mail.example.com", "smtp://h/x"]
)
def test_bad_smtp_urls_say_why(url: str) -> None:
    with pytest.raises(ValueError, match="must"):
        SmtpServer.parse(url)


def test_credentials_in_the_url_are_decoded() -> None:
    server = SmtpServer.parse("smtp://u%40x:p%3Aw@mail.example.com:2525")
    assert (server.username, server.password) == ("u@x", "p:w")
    assert "p:w" not in repr(server)


async def test_outbox_files_are_for_their_owner_only(tmp_path: Path, clock: FakeClock) -> None:
    """Their links carry tokens."""
    receipt = await OutboxMailer(tmp_path / "outbox", SENDER, clock=clock).send(_message())
    assert _modes(tmp_path / "outbox") == {".": 0o700, Path(receipt).name: 0o600}


def _modes(directory: Path) -> dict[str, int]:
    modes = {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}
    return {".": directory.stat().st_mode & 0o777, **modes}
