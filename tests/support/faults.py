"""Repositories whose one operation fails, to prove a use case is all-or-nothing."""

from __future__ import annotations

from typing import Any


class StepFailed(Exception):
    """The step a test made fail (as a crash or a lost connection would)."""


class FailingOn:
    """``inner`` with its ``operation`` raising ``StepFailed`` before it writes;
    every other call passes through."""

    def __init__(self, inner: Any, operation: str) -> None:
        self._inner = inner
        self._operation = operation

    def __getattr__(self, name: str) -> Any:
        if name == self._operation:
            return self._fail
        return getattr(self._inner, name)

    async def _fail(self, *args: object, **kwargs: object) -> Any:
        raise StepFailed(self._operation)
