"""Reading and writing metric files: CSV with a header, or JSON Lines."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, BinaryIO

from engage_core.ports import ExportedMetric
from engage_core.services.backfill import RawRow

COLUMNS = ("email", "metric_type", "metric_value", "recorded_at")
REQUIRED = frozenset(COLUMNS[1:])
FORMATS = ("csv", "jsonl")


class FileError(Exception):
    """The file as a whole is unusable (bad header, not UTF-8, ...)."""


class CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it, for progress."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.count += size
        return size


def format_of(path: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    lowered = path.lower()
    for fmt in FORMATS:
        if lowered.endswith(f".{fmt}"):
            return fmt
    if path == "-":
        return "csv"
    raise FileError(f"cannot tell the format of {path}: name it .csv or .jsonl, or pass --format")


def read_rows(text: IO[str], fmt: str) -> Iterator[RawRow]:
    """The rows of ``text``; ``FileError`` for a file unusable as a whole, such as one
    that is not UTF-8 (read with ``errors="surrogateescape"`` to have its line named)."""
    return _read_csv(text) if fmt == "csv" else _read_jsonl(text)


def _require_utf8(text: str, line: int) -> None:
    """``FileError`` naming ``line`` if ``text`` holds bytes that were not UTF-8."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise FileError(f"line {line}: the file is not valid UTF-8") from None


def _read_csv(text: IO[str]) -> Iterator[RawRow]:
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise FileError("the file is empty: expected a header line") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise FileError(f"line 1: {_reason(exc)}") from None
    _require_utf8("".join(header), reader.line_num)
    names = [name.strip().lower() for name in header]
    unknown = [n for n in names if n not in COLUMNS]
    missing = sorted(REQUIRED - set(names))
    repeated = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or repeated:
        faults = [
            f"{what}: {', '.join(which)}"
            for what, which in (("unknown", unknown), ("missing", missing), ("twice", repeated))
            if which
        ]
        raise FileError(
            "line 1: the header must name the columns "
            f"{', '.join(COLUMNS)} (email optional with --user); " + "; ".join(faults)
        )
    position = {name: names.index(name) for name in names}
    email_at = position.get("email")
    while True:
        # A row is named by the line it starts on: a quoted field may go on over several.
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileError(f"line {reader.line_num}: {_reason(exc)}") from None
        if not fields:
            continue  # a blank line
        _require_utf8("".join(fields), line)
        if len(fields) != len(names):
            fault = f"has {len(fields)} fields; the header names {len(names)}"
            yield RawRow(line, fault=fault)
            continue
        yield RawRow(
            line,
            fields[email_at].strip() if email_at is not None else None,
            fields[position["metric_type"]],
            fields[position["metric_value"]],
            fields[position["recorded_at"]],
        )


def _read_jsonl(text: IO[str]) -> Iterator[RawRow]:
    line = 0
    while True:
        try:
            raw = text.readline()
        except UnicodeDecodeError as exc:
            raise FileError(f"line {line + 1}: {_reason(exc)}") from None
        if not raw:
            return
        line += 1
        _require_utf8(raw, line)
        if not raw.strip():
            continue
        try:
            # Integers as Decimal too: one of any length is a number the rules refuse
            # as too large, not a string Python would not convert.
            item = json.loads(
                raw, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constant
            )
        except ValueError as exc:
            yield RawRow(line, fault=f"is not JSON: {exc}")
            continue
        if not isinstance(item, dict):
            yield RawRow(line, fault="is not a JSON object")
            continue
        extra = sorted(set(item) - set(COLUMNS))
        if extra:
            yield RawRow(line, fault=f"has unknown keys: {', '.join(extra)}")
            continue
        yield RawRow(
            line,
            item.get("email"),
            item.get("metric_type"),
            item.get("metric_value"),
            item.get("recorded_at"),
        )


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the file is not valid UTF-8"
    return str(exc)


def csv_line(metric: ExportedMetric) -> list[str]:
    return [
        metric.email,
        metric.metric_type,
        str(metric.metric_value),
        metric.recorded_at.isoformat(),
    ]


def jsonl_line(metric: ExportedMetric) -> str:
    # metric_value as a JSON number with every digit kept.
    return (
        f'{{"email": {json.dumps(metric.email)}, "metric_type": {json.dumps(metric.metric_type)}, '
        f'"metric_value": {metric.metric_value}, '
        f'"recorded_at": "{metric.recorded_at.isoformat()}"}}\n'
    )
