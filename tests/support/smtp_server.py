"""A real SMTP server for the tests: aiosmtpd on a loopback port, with STARTTLS
(or TLS from the first byte) under a certificate made for the test.

``LoopbackMailServer.start()`` listens, ``stop()`` goes away (connections are then
refused, as from a server that is down), ``start()`` again comes back on the
same port. Every message it accepts is in ``received``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from attrs import define, field
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USERNAME = "mailer"
PASSWORD = "mail server secret"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "engage test mail server")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@define
class Received:
    """One message the server accepted, and how it came."""

    envelope_to: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool

    def body(self, subtype: str) -> str:
        part = self.message.get_body((subtype,))
        assert part is not None, f"no text/{subtype} part"
        content: str = part.get_content()  # type: ignore[attr-defined]
        return content


class _Handler:
    def __init__(self, server: LoopbackMailServer) -> None:
        self._server = server

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.lower() in self._server.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._server.lock:
            self._server.received.append(
                Received(
                    envelope_to=list(envelope.rcpt_tos),
                    message=message,
                    tls=server.transport.get_extra_info("ssl_object") is not None,
                    authenticated=bool(session.authenticated),
                )
            )
        return "250 2.0.0 accepted for delivery"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@define
class LoopbackMailServer:
    """``mode``: "starttls" (plain, upgraded on request; AUTH only after it), "tls"
    (TLS from the first byte) or "plain" (no TLS at all, so no AUTH either).
    ``smtputf8``: whether it offers SMTPUTF8 (RFC 6531) from its next ``start()``."""

    cert_file: Path
    key_file: Path
    mode: str = "starttls"
    port: int = field(factory=free_port)
    received: list[Received] = field(factory=list)
    refused: set[str] = field(factory=set)
    smtputf8: bool = True
    lock: threading.Lock = field(factory=threading.Lock)
    _controller: Controller | None = None

    def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        options: dict[str, Any] = {
            # aiosmtpd counts only STARTTLS as TLS for AUTH; here all of it is TLS.
            "tls": {"ssl_context": context, "auth_require_tls": False},
            "starttls": {"tls_context": context},
            "plain": {},
        }[self.mode]
        self._controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=_authenticate,
            enable_SMTPUTF8=self.smtputf8,
            **options,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def url(self, *, credentials: bool = True) -> str:
        scheme = "smtps" if self.mode == "tls" else "smtp"
        user = f"{USERNAME}:{PASSWORD.replace(' ', '%20')}@" if credentials else ""
        return f"{scheme}://{user}127.0.0.1:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        """What a client needs to trust this server's certificate."""
        return ssl.create_default_context(cafile=str(self.cert_file))

    async def wait_for(self, count: int, *, within: float = 10.0) -> list[Received]:
        """The first ``count`` messages, once that many have arrived (AssertionError after
        ``within`` seconds)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received[:count])
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.received)} of {count} messages arrived")
