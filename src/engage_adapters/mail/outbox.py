"""Mail with no mail server: each message an ``.eml`` file in ``DATA_DIR/outbox/``.

What ``engage serve`` does when ``ENGAGE_SMTP_URL`` is unset, so a quick start
works: the files open in any mail program, and each one is logged with its link.
Files are written whole or not at all (a temporary file renamed into place),
readable by their owner only, since their links carry tokens.
"""

from __future__ import annotations

import asyncio
import email.policy
import itertools
import logging
import os
from pathlib import Path

from engage_adapters.mail.message import as_email
from engage_core.ports import Clock, MailMessage, MailNotSent

log = logging.getLogger("engage.mail")
OUTBOX_DIR = "outbox"
_UTF8_HEADERS = email.policy.default.clone(utf8=True)


class OutboxMailer:
    def __init__(self, directory: Path, sender: str, *, clock: Clock) -> None:
        self.directory = directory
        self._sender = sender
        self._clock = clock
        self._sequence = itertools.count(1)

    async def send(self, message: MailMessage) -> str:
        at = self._clock.now()
        # UTF-8 headers (RFC 6532): a non-ASCII mailbox name cannot be an encoded word.
        data = as_email(message, self._sender, at).as_bytes(policy=_UTF8_HEADERS)
        # In the order written (within a process, even in the same microsecond).
        name = f"{at:%Y%m%dT%H%M%S%fZ}-{next(self._sequence):06d}-{message.id}.eml"
        try:
            path = await asyncio.to_thread(self._write, name, data)
        except OSError as exc:
            raise MailNotSent(f"cannot write to {self.directory}: {exc.strerror}") from None
        log.info(
            "mail.outbox to=%s subject=%r link=%s file=%s",
            message.to.value,
            message.subject,
            message.link or "-",
            path,
        )
        return str(path)

    def _write(self, name: str, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return path
