"""Mail through a real SMTP server (aiosmtpd on loopback, STARTTLS and a password, under a
certificate made for the test): the flows deliver through ENGAGE_SMTP_URL, and a mail
server that is down delays the mail, never the request, and never loses it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engage_adapters.clock import SystemClock
from engage_core.ports import Clock
from support.smtp_server import LoopbackMailServer, make_certificate
from support.waiting import rows_once

PASSWORD = "correct horse battery staple"
_TOKEN = re.compile(r"#token=([A-Za-z0-9_-]+)")


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackMailServer]:
    server = LoopbackMailServer(*make_certificate(tmp_path_factory.mktemp("tls")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mail_server(
    smtp_server: LoopbackMailServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LoopbackMailServer]:
    """The server, emptied, trusted through SSL_CERT_FILE (as an operator would with a
    private CA), and running again after the test."""
    smtp_server.received.clear()
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp_server.cert_file))
    yield smtp_server
    if smtp_server._controller is None:
        smtp_server.start()


@pytest.fixture
def clock() -> Clock:
    """Real time: retries fall due as time passes."""
    return SystemClock()


@pytest.fixture
def environ(environ: dict[str, str], smtp_server: LoopbackMailServer) -> dict[str, str]:
    return {
        **environ,
        "ENGAGE_SMTP_URL": smtp_server.url(),
        "ENGAGE_MAIL_FROM": "engage-suite <no-reply@engage.example>",
        "ENGAGE_PUBLIC_URL": "https://engage.example",
        "ENGAGE_MAIL_RETRY_DELAY": "100ms",
    }


def token_of(text: str) -> str:
    match = _TOKEN.search(text)
    assert match, text
    return match[1]


async def test_signup_and_verification_over_smtp(
    client: httpx.AsyncClient, api: Any, mail_server: LoopbackMailServer, tmp_path: Path
) -> None:
    await api.sign_up("ada@example.com")
    [received] = await mail_server.wait_for(1)
    assert received.envelope_to == ["ada@example.com"]
    assert (received.tls, received.authenticated) == (True, True)
    assert received.message["From"] == "engage-suite <no-reply@engage.example>"
    assert received.message["Message-ID"].endswith("@engage.example>")
    text = received.body("plain")
    assert "https://engage.example/verify-email#token=" in text
    assert "<p>" in received.body("html")
    answer = await client.post("/api/auth/verify", json={"token": token_of(text)})
    assert answer.status_code == 204
    assert not (tmp_path / "outbox").exists()  # with SMTP configured, nothing goes there


async def test_a_mail_server_that_is_down_delays_the_mail_and_loses_nothing(
    client: httpx.AsyncClient,
    api: Any,
    mail_server: LoopbackMailServer,
    db: Any,
) -> None:
    mail_server.stop()
    await api.sign_up("ada@example.com")  # the request succeeds all the same
    answer = await client.post("/api/auth/password/forgot", json={"email": "ada@example.com"})
    assert answer.status_code == 202
    rows = await rows_once(  # the sender has failed at least once for each
        db,
        "SELECT attempts, last_error FROM mail_outbox WHERE attempts > 0",
        lambda rows: len(rows) == 2 and all(error for _, error in rows),
    )
    assert len(rows) == 2, rows
    assert mail_server.received == []

    mail_server.start()
    received = await mail_server.wait_for(2)
    subjects = sorted(str(r.message["Subject"]) for r in received)
    assert subjects == [
        "Reset your engage-suite password",
        "Verify your email address for engage-suite",
    ]
    sent = [("sent",), ("sent",)]
    assert await rows_once(db, "SELECT status FROM mail_outbox", sent.__eq__) == sent

    # The reset link from the delayed mail works, end to end.
    reset = next(r for r in received if "Reset" in str(r.message["Subject"]))
    body = {"token": token_of(reset.body("plain")), "new_password": "a brand new passphrase"}
    assert (await client.post("/api/auth/password/reset", json=body)).status_code == 204
    await api.bearer("ada@example.com", "a brand new passphrase")


@pytest.fixture
def server_without_smtputf8(mail_server: LoopbackMailServer) -> Iterator[LoopbackMailServer]:
    mail_server.stop()
    mail_server.smtputf8 = False
    mail_server.start()
    yield mail_server
    mail_server.stop()
    mail_server.smtputf8 = True
    mail_server.start()


async def test_an_address_with_an_international_domain_reaches_a_server_without_smtputf8(
    api: Any, server_without_smtputf8: LoopbackMailServer, db: Any
) -> None:
    # The test server offers no SMTPUTF8: the domain goes as its A-label (RFC 5890),
    # which every server takes, and the mail arrives at the first attempt.
    await api.sign_up("ada@exämple.com")
    [received] = await server_without_smtputf8.wait_for(1)
    assert received.envelope_to == ["ada@xn--exmple-cua.com"]
    assert received.message["To"] == "ada@xn--exmple-cua.com"
    # Marked sent once the server took it: soon after it arrived.
    outbox = await rows_once(
        db, "SELECT status, attempts FROM mail_outbox", lambda rows: rows != [("queued", 1)]
    )
    assert outbox == [("sent", 1)]


async def test_a_non_ascii_mailbox_that_the_server_cannot_take_fails_at_once(
    api: Any, server_without_smtputf8: LoopbackMailServer, db: Any
) -> None:
    # Only SMTPUTF8 carries "jürgen@": retrying a server without it cannot help.
    await api.sign_up("jürgen@example.com")
    rows = await rows_once(
        db,
        "SELECT status, attempts, last_error FROM mail_outbox",
        lambda rows: bool(rows) and rows[0][0] != "queued",
    )
    [(status, attempts, error)] = rows
    assert (status, attempts) == ("failed", 1)
    assert "SMTPUTF8" in error
    assert server_without_smtputf8.received == []
