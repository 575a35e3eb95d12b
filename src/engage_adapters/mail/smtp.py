"""Mail through an SMTP server (aiosmtplib), as ``ENGAGE_SMTP_URL`` names it.

``smtp://[user:pass@]host[:587]`` upgrades the connection with STARTTLS when
the server offers it, and insists on it when the URL carries credentials (they
never cross the network in the clear); ``smtps://[user:pass@]host[:465]``
speaks TLS from the first byte. Certificates are checked against the system's
CAs (``SSL_CERT_FILE`` names others) unless a TLS context is given.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import unquote, urlsplit

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol
from attrs import field, frozen

from engage_adapters.mail.message import as_email
from engage_core.ports import Clock, MailMessage, MailNotSent

SCHEMES = {"smtp": 587, "smtps": 465}
DEFAULT_TIMEOUT = 30.0
# How long a closed connection may take to say goodbye over TLS before it is cut.
CLOSE_GRACE = 2.0


@frozen(kw_only=True)
class SmtpServer:
    """Where and how to reach the mail server."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        """``ValueError`` saying what is wrong with ``url``."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"is not a valid URL: {exc}") from None
        if parts.scheme not in SCHEMES:
            raise ValueError("must start with smtp:// (STARTTLS) or smtps:// (TLS)")
        if not parts.hostname:
            raise ValueError("must name the mail server's host, e.g. smtp://mail.example.com:587")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be only smtp[s]://[user:password@]host[:port]")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if (username is None) != (password is None):
            raise ValueError("must carry both a user name and a password, or neither")
        return cls(
            host=parts.hostname,
            port=port or SCHEMES[parts.scheme],
            implicit_tls=parts.scheme == "smtps",
            username=username,
            password=password,
        )

    def __str__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


class SmtpMailer:
    """One connection per message: queued mail is rare enough, and a fresh
    connection never finds a session the server has timed out."""

    def __init__(
        self,
        server: SmtpServer,
        sender: str,
        *,
        clock: Clock,
        timeout: float = DEFAULT_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._server = server
        self._sender = sender
        self._clock = clock
        self._timeout = timeout
        self._tls_context = tls_context

    async def send(self, message: MailMessage) -> str:
        server = self._server
        client = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.implicit_tls,
            # None: upgrade if offered. Credentials are never sent without TLS.
            start_tls=False if server.implicit_tls else (True if server.username else None),
            timeout=self._timeout,
            tls_context=self._tls_context,
        )
        mail = as_email(message, self._sender, self._clock.now())
        connection: SMTPProtocol | None = None
        try:
            async with client:
                connection = client.protocol
                _, reply = await client.send_message(mail)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusals = exc.recipients
            raise MailNotSent(
                "; ".join(f"{r.code} {r.message}" for r in refusals),
                permanent=all(r.code >= 500 for r in refusals),
            ) from None
        except aiosmtplib.SMTPNotSupported as exc:
            # A non-ASCII mailbox name and no SMTPUTF8: this server never will take it.
            raise MailNotSent(f"{server}: {exc}", permanent=True) from None
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx: the server will refuse this again (an unknown mailbox, bad credentials).
            raise MailNotSent(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            raise MailNotSent(f"{server}: {type(exc).__name__}: {exc}") from None
        finally:
            await _until_closed(connection)
        return reply


async def _until_closed(connection: SMTPProtocol | None) -> None:
    """Return once the connection's socket is closed, on every path.

    aiosmtplib closes a TLS connection by starting its goodbye (close_notify) and
    returning: a caller whose event loop ends then (a CLI command, a test) would
    leave the socket open. A goodbye that takes over CLOSE_GRACE seconds is cut.
    """
    if connection is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_GRACE
    # aiosmtplib tells no one when its connection ends: look until it has.
    while connection.transport is not None and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    if isinstance(connection.transport, asyncio.Transport):
        connection.transport.abort()
        await asyncio.sleep(0)  # the transport closes its socket on the next turn
