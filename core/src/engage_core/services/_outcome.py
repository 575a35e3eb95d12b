"""Work run behind a check its store makes with it (a session's liveness, an API
key's): its result or error is kept, not raised, until the check has passed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from attrs import frozen

T = TypeVar("T")


@frozen
class Outcome(Generic[T]):
    """What a piece of work returned or raised, kept until its check is answered."""

    value: T | None = None
    error: Exception | None = None

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # None only with an error


def kept(work: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[Outcome[T]]]:
    """``work`` answering its ``Outcome`` instead of raising: raised by the caller
    with ``unwrap`` once the check has passed, dropped if it refused."""

    async def run() -> Outcome[T]:
        try:
            return Outcome(value=await work())
        except Exception as exc:
            return Outcome(error=exc)

    return run
