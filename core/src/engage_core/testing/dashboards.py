"""A dashboard codec for tests: entries kept in memory, opaque bytes handed out."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TypeVar

from engage_core.model import EngagementMetric
from engage_core.ports import DashboardEntry
from engage_core.queries import Series

__all__ = ["FakeDashboardCodec"]

_Read = TypeVar("_Read")


class FakeDashboardCodec:
    """The ``DashboardCodec`` port without a wire format: each entry encoded is kept
    here, and its bytes are a name for it that only this codec can read back.
    Bytes it did not hand out (or handed out for the other kind of entry) decode
    as None, as the port says. Entries are never forgotten: one codec per test."""

    def __init__(self) -> None:
        self._pages: dict[bytes, DashboardEntry[Sequence[EngagementMetric]]] = {}
        self._summaries: dict[bytes, DashboardEntry[Sequence[Series]]] = {}
        self._numbers = itertools.count(1)

    def encode_page(self, entry: DashboardEntry[Sequence[EngagementMetric]]) -> bytes:
        return self._keep(self._pages, b"page", entry)

    def decode_page(self, raw: bytes) -> DashboardEntry[Sequence[EngagementMetric]] | None:
        return self._pages.get(raw)

    def encode_summary(self, entry: DashboardEntry[Sequence[Series]]) -> bytes:
        return self._keep(self._summaries, b"summary", entry)

    def decode_summary(self, raw: bytes) -> DashboardEntry[Sequence[Series]] | None:
        return self._summaries.get(raw)

    def _keep(
        self,
        kept: dict[bytes, DashboardEntry[Sequence[_Read]]],
        kind: bytes,
        entry: DashboardEntry[Sequence[_Read]],
    ) -> bytes:
        raw = b"fake-dashboard-%s:%d" % (kind, next(self._numbers))
        # A tuple: what the caller does to its list later is not what was cached.
        kept[raw] = DashboardEntry(entry.user_id, entry.query, tuple(entry.data))
        return raw
