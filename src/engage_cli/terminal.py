"""Whether a person is at the keyboard: prompts only then, refusals otherwise."""

from __future__ import annotations

import sys


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()
