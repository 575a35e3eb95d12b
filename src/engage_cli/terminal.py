"""Whether a person is at the keyboard (prompts only then, refusals otherwise), and
how counts read to them."""

from __future__ import annotations

import sys


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def counted(count: int, noun: str, *, grouped: bool = False) -> str:
    """``1 metric``, ``2 metrics``; with ``grouped``, thousands apart (``1,000 metrics``)."""
    number = f"{count:,}" if grouped else str(count)
    return f"{number} {noun}" if count == 1 else f"{number} {noun}s"
