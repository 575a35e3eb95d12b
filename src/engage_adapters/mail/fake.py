"""A mailer for tests: keeps what it is given, and fails on demand."""

from __future__ import annotations

from engage_core.ports import MailMessage, MailNotSent


class FakeMailer:
    """``sent`` holds every message taken, in order. While ``down`` is set every
    send fails as a mail server that does not answer would; ``refuse`` makes
    them fail for good (as a 5xx refusal)."""

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
