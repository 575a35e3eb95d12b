"""Cached dashboard entries as JSON (the ``DashboardCodec`` port).

cattrs turns entries into JSON's types and back: decimals and instants exactly
(as text), value objects as their text, read back through their rules (a cache
is not the database: what it holds is checked again).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import cattrs

from engage_core.model import EngagementMetric, MetricType, MetricValue
from engage_core.ports import DashboardEntry
from engage_core.queries import Series

__all__ = ["JsonDashboardCodec"]

_Read = TypeVar("_Read")


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(Decimal, lambda raw, _: Decimal(raw))
    converter.register_unstructure_hook(datetime, datetime.isoformat)
    converter.register_structure_hook(datetime, lambda raw, _: datetime.fromisoformat(raw))
    converter.register_unstructure_hook(UUID, str)
    converter.register_structure_hook(UUID, lambda raw, _: UUID(raw))
    converter.register_unstructure_hook(MetricType, lambda t: t.value)
    converter.register_structure_hook(MetricType, lambda raw, _: MetricType(raw))
    converter.register_unstructure_hook(MetricValue, lambda v: str(v.value))
    converter.register_structure_hook(MetricValue, lambda raw, _: MetricValue(Decimal(raw)))
    return converter


class JsonDashboardCodec:
    """``{"user": ..., "query": ..., "data": [...]}`` in UTF-8; bucket starts keep
    their offset only (``DashboardCache`` gives them the query's zone again)."""

    def __init__(self) -> None:
        self._converter = _converter()

    def encode_page(self, entry: DashboardEntry[Sequence[EngagementMetric]]) -> bytes:
        return self._encode(entry, list[EngagementMetric])

    def decode_page(self, raw: bytes) -> DashboardEntry[Sequence[EngagementMetric]] | None:
        return self._decode(raw, list[EngagementMetric])

    def encode_summary(self, entry: DashboardEntry[Sequence[Series]]) -> bytes:
        return self._encode(entry, list[Series])

    def decode_summary(self, raw: bytes) -> DashboardEntry[Sequence[Series]] | None:
        return self._decode(raw, list[Series])

    def _encode(self, entry: DashboardEntry[Sequence[_Read]], shape: Any) -> bytes:
        data = self._converter.unstructure(list(entry.data), shape)
        document = {"user": str(entry.user_id), "query": entry.query, "data": data}
        return json.dumps(document).encode("utf-8")

    def _decode(self, raw: bytes, shape: Any) -> DashboardEntry[Sequence[_Read]] | None:
        try:
            document = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(document, dict):
            return None
        user, query = document.get("user"), document.get("query")
        if not isinstance(user, str) or not isinstance(query, str):
            return None
        try:
            user_id = UUID(user)
            data = tuple(self._converter.structure(document.get("data"), shape))
        except (ValueError, TypeError, cattrs.BaseValidationError):
            return None  # not an entry of ours
        return DashboardEntry(user_id, query, data)
