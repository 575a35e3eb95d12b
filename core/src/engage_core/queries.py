"""Read-side value objects: metric pages, keyset cursors and summary series."""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import re
import struct
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from attrs import field, frozen

from engage_core.errors import ValidationFailed
from engage_core.model import EngagementMetric, MetricType, parse_iso_date_time

__all__ = [
    "DEFAULT_PAGE_LIMIT",
    "MAX_PAGE_LIMIT",
    "Bucket",
    "CursorCodec",
    "MetricPage",
    "MetricPageQuery",
    "Point",
    "Position",
    "Series",
    "Summary",
    "SummaryQuery",
    "check_bound",
    "check_bucket",
    "check_limit",
    "check_range",
    "check_time_zone",
    "known_time_zones",
]

DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 500


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+", re.ASCII)
# Range ends are held within these: no metric lies outside them (recorded_at runs from
# 1970 to now), and slot and bucket arithmetic near datetime's own limits overflows.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def check_limit(raw: object) -> int:
    """A page size: a whole number (or its decimal text, as a query sends it) from 1 to 500."""
    if isinstance(raw, str) and _WHOLE_NUMBER.fullmatch(raw):
        try:
            raw = int(raw)
        except ValueError:  # more digits than int() reads: far out of range anyway
            raise ValidationFailed.single("limit", f"must be 1 to {MAX_PAGE_LIMIT}") from None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValidationFailed.single("limit", "must be a whole number")
    if not 1 <= raw <= MAX_PAGE_LIMIT:
        raise ValidationFailed.single("limit", f"must be 1 to {MAX_PAGE_LIMIT}")
    return raw


def check_bound(raw: object) -> datetime:
    """An end of a time range (``since``, ``until``): an ISO 8601 date-time with an
    offset, in UTC. Unlike a metric's ``recorded_at`` it may be any moment, even one
    past what a datetime holds in UTC (0001-01-01T00:00+05:00); those far from any
    metric are held at 1900 or 9000, which selects the same metrics."""
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, str):
        moment = parse_iso_date_time(raw, "since")
    else:
        raise ValidationFailed.single("since", "must be an ISO 8601 date-time string")
    offset = moment.utcoffset()
    if offset is None:
        raise ValidationFailed.single("since", "must carry a UTC offset (such as Z or +02:00)")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        return _EARLIEST if offset > timedelta(0) else _LATEST
    return min(max(utc, _EARLIEST), _LATEST)


def check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise ValidationFailed.single("until", "must be after since")


@frozen(order=True)
class Position:
    """A place in the newest-first order of one user's metrics."""

    recorded_at: datetime
    id: int


@frozen(kw_only=True)
class MetricPageQuery:
    metric_type: MetricType | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_PAGE_LIMIT
    after: Position | None = None


@frozen(kw_only=True)
class MetricPage:
    items: tuple[EngagementMetric, ...]
    next_cursor: str | None


_CURSOR_VERSION = 1
_CURSOR_BODY = struct.Struct(">BqQ")  # version, recorded_at in µs since the epoch, id
_CURSOR_MAC_BYTES = 16
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]{44}")  # 33 bytes, unpadded URL-safe base64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@frozen
class CursorCodec:
    """Opaque, tamper-evident keyset cursors.

    A cursor names a position and is signed together with the query it
    belongs to (user and filters), so it cannot be forged, edited, or reused
    with another user or other filters.
    """

    key: bytes = field(repr=False)

    def encode(self, position: Position, *, scope: str) -> str:
        micros = (position.recorded_at - _EPOCH) // _MICROSECOND
        body = _CURSOR_BODY.pack(_CURSOR_VERSION, micros, position.id)
        token = body + self._mac(body, scope)
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")

    def decode(self, cursor: str, *, scope: str) -> Position:
        refused = ValidationFailed.single("cursor", "is not a cursor this server issued")
        # The decoder skips characters outside the alphabet; check them first.
        if not _CURSOR_TEXT.fullmatch(cursor):
            raise refused
        try:
            token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise refused from None
        body, mac = token[: _CURSOR_BODY.size], token[_CURSOR_BODY.size :]
        if len(body) != _CURSOR_BODY.size or not hmac.compare_digest(mac, self._mac(body, scope)):
            raise refused
        version, micros, metric_id = _CURSOR_BODY.unpack(body)
        if version != _CURSOR_VERSION:
            raise refused
        return Position(_EPOCH + micros * _MICROSECOND, metric_id)

    def _mac(self, body: bytes, scope: str) -> bytes:
        message = body + b"\x00" + scope.encode("utf-8")
        return hmac.new(self.key, message, hashlib.sha256).digest()[:_CURSOR_MAC_BYTES]


class Bucket(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


def check_bucket(raw: object) -> Bucket:
    if isinstance(raw, str) and raw in Bucket.__members__.values():
        return Bucket(raw)
    raise ValidationFailed.single("bucket", "must be one of hour, day, week")


# Linux and macOS keep the zones in /usr/share/zoneinfo; images without it (Alpine,
# distroless) and Windows read them from the tzdata package, which engage-core
# requires only on Windows.
_NO_ZONE_DATABASE = (
    "this Python finds no IANA time zone database (no zoneinfo directory on"
    " zoneinfo.TZPATH and no tzdata package), so no summary can be bucketed,"
    " not even in UTC: pip install tzdata"
)


def check_time_zone(raw: object) -> ZoneInfo:
    """The zone ``raw`` names; ``ValidationFailed`` on ``tz`` for a name that is not
    one. ``ZoneInfoNotFoundError`` saying so when the system has no zones at all:
    no name is at fault then."""
    if isinstance(raw, ZoneInfo):
        return raw
    if isinstance(raw, str) and not _zone_database():
        raise ZoneInfoNotFoundError(_NO_ZONE_DATABASE)
    if not isinstance(raw, str) or raw not in known_time_zones():
        raise ValidationFailed.single("tz", "must be an IANA time zone name such as Europe/Berlin")
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):  # pragma: no cover - listed zones load
        raise ValidationFailed.single("tz", "is not a known time zone") from None


def _utc() -> ZoneInfo:
    """Loaded when a query wants it, not on import: importing engage-core needs no zones."""
    return check_time_zone("UTC")


def _zone_database() -> bool:
    """Whether this system has any IANA zones (``known_time_zones`` adds only "UTC")."""
    return known_time_zones() != {"UTC"}


@functools.cache
def known_time_zones() -> frozenset[str]:
    """The names ``tz`` may take: the IANA zones this system knows."""
    # "localtime" and "posixrules" are files of a zoneinfo folder, not zone names.
    return (frozenset(available_timezones()) | {"UTC"}) - {"localtime", "posixrules"}


@frozen(kw_only=True)
class SummaryQuery:
    bucket: Bucket = field(default=Bucket.DAY, converter=check_bucket)
    tz: ZoneInfo = field(factory=_utc, converter=check_time_zone)
    since: datetime | None = None
    until: datetime | None = None
    metric_type: MetricType | None = None


@frozen(kw_only=True)
class Point:
    """One non-empty bucket: it starts at ``start`` (in the query's zone)."""

    start: datetime
    count: int
    sum: Decimal
    min: Decimal
    max: Decimal

    @property
    def avg(self) -> Decimal:
        """``sum / count`` to 20 decimal places, trailing zeros dropped, in plain notation;
        never outside ``min`` and ``max`` (values finer than 20 places round past them)."""
        with localcontext(prec=60):
            value = (self.sum / self.count).quantize(Decimal("1e-20"))
            if value < self.min:
                return self.min
            if value > self.max:
                return self.max
            if value == value.to_integral_value():
                return value.quantize(Decimal(1))
            return value.normalize()


@frozen(kw_only=True)
class Series:
    metric_type: MetricType
    points: tuple[Point, ...]


@frozen(kw_only=True)
class Summary:
    bucket: Bucket
    tz: ZoneInfo
    series: tuple[Series, ...]
