"""A clock that tests move by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from attrs import define, field

__all__ = ["FakeClock"]


@define
class FakeClock:
    """A clock that stands still until told to move."""

    current: datetime = field(factory=lambda: datetime(2026, 1, 1, 12, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta | float) -> None:
        self.current += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
