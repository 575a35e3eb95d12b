"""Reading the mail the app sent: the ``.eml`` files of the outbox directory."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from email.message import EmailMessage
from pathlib import Path

_TOKEN = re.compile(r"#token=([A-Za-z0-9_-]+)")


def read_outbox(directory: Path) -> list[EmailMessage]:
    """Every message written so far, oldest first."""
    if not directory.is_dir():
        return []
    messages = []
    for path in sorted(directory.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


async def mail_to(
    directory: Path, address: str, *, count: int = 1, within: float = 10.0
) -> list[EmailMessage]:
    """The first ``count`` messages to ``address``, once they are written (the app's
    sender delivers in the background); AssertionError after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = [m for m in read_outbox(directory) if str(m["To"]).lower() == address.lower()]
        if len(found) >= count:
            return found[:count]
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} of {count} messages to {address} arrived")
        await asyncio.sleep(0.02)


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()  # type: ignore[attr-defined]
    return content


def token_in(message: EmailMessage) -> str:
    """The token of the message's link."""
    match = _TOKEN.search(text_of(message))
    assert match, text_of(message)
    return match[1]
