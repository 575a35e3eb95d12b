"""Bulk loading and export of metrics, for operators.

A backfill validates every row with the API's rules while streaming the good
ones into the store, in one transaction, in one pass (memory stays flat
whatever the file's size). The store then checks every email is a user's, and
commits only if no row at all was bad: one bad row (or unknown email) and
nothing is stored. Rows already stored (same user, type, time and value) are
skipped, so loading a file twice does not double-count.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple, Protocol
from uuid import UUID

from attrs import define, field, frozen

from engage_core.errors import ValidationFailed
from engage_core.model import (
    MAX_FUTURE_SKEW,
    Email,
    MetricDraft,
    parse_metric_value,
    parse_timestamp,
)
from engage_core.ports import Clock

MAX_REPORTED_FAULTS = 20
PROGRESS_EVERY = 1_000  # rows per progress call (a call per row costs more than the bar)
MAX_REMEMBERED = 100_000  # distinct emails and metric types whose verdict is kept


@frozen
class RawRow:
    """One input row as read from a file; ``line`` is where it ends in the file.

    A reader that could not make a row out of a line says why in ``fault``.
    """

    line: int
    email: object = None
    metric_type: object = None
    metric_value: object = None
    recorded_at: object = None
    fault: str | None = None


@frozen
class RowFault:
    line: int
    message: str


class StagedMetric(NamedTuple):
    """A valid row on its way to the store; the store maps the email to its user.

    A named tuple, not an attrs class: a backfill makes one per row, and this is
    the cheapest immutable record to build (and to hand to a COPY as it is).
    """

    line: int
    email: str  # Email.canonical
    metric_type: str
    metric_value: Decimal
    recorded_at: datetime


@frozen
class LoadOutcome:
    committed: bool
    inserted: int = 0
    skipped: int = 0
    unknown_emails: tuple[RowFault, ...] = ()  # the first few, by line
    unknown_email_rows: int = 0


@frozen
class ExportedMetric:
    email: str
    metric_type: str
    metric_value: Decimal
    recorded_at: datetime


@frozen(kw_only=True)
class BackfillReport:
    rows: int
    inserted: int = 0
    skipped: int = 0
    faults: tuple[RowFault, ...] = ()
    fault_count: int = 0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.fault_count == 0


class BulkMetricStore(Protocol):
    async def load(
        self, rows: Iterable[StagedMetric], *, commit: Callable[[], bool]
    ) -> LoadOutcome:
        """In one transaction: take every row, find those whose email is no
        user's, and insert the rows not stored yet, then commit only if there
        were no unknown emails and ``commit()`` (asked after the last row) says so."""
        ...

    def export(
        self, *, user_id: UUID | None, since: datetime | None, until: datetime | None
    ) -> AsyncGenerator[ExportedMetric, None]:
        """Every matching metric with its user's email, oldest first, streamed."""
        ...


@define
class _Faults:
    kept: list[RowFault] = field(factory=list)
    count: int = 0

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_REPORTED_FAULTS:
            self.kept.append(RowFault(line, message))


def _describe(exc: ValidationFailed) -> str:
    return "; ".join(f"{e.field} {e.message}" for e in exc.errors)


@define
class BackfillService:
    store: BulkMetricStore
    clock: Clock

    async def backfill(
        self,
        rows: Iterable[RawRow],
        *,
        user_email: str | None = None,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> BackfillReport:
        """Validate and load ``rows`` (all or nothing); with ``dry_run``, only validate."""
        default = Email(user_email) if user_email is not None else None
        faults = _Faults()
        counted = [0]
        staged = self._validated(rows, default, faults, counted, progress)
        outcome = await self.store.load(staged, commit=lambda: faults.count == 0 and not dry_run)
        for fault in outcome.unknown_emails:
            faults.add(fault.line, fault.message)
        faults.count += outcome.unknown_email_rows - len(outcome.unknown_emails)
        return BackfillReport(
            rows=counted[0],
            inserted=outcome.inserted if outcome.committed else 0,
            skipped=outcome.skipped if outcome.committed else 0,
            faults=tuple(sorted(faults.kept, key=lambda f: f.line)[:MAX_REPORTED_FAULTS]),
            fault_count=faults.count,
            dry_run=dry_run,
        )

    def export(
        self,
        *,
        user_id: UUID | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AsyncGenerator[ExportedMetric, None]:
        return self.store.export(user_id=user_id, since=since, until=until)

    def _validated(
        self,
        rows: Iterable[RawRow],
        default: Email | None,
        faults: _Faults,
        counted: list[int],
        progress: Callable[[int], None] | None,
    ) -> Iterator[StagedMetric]:
        """The valid rows, in order; every bad row goes to ``faults``.

        A row whose email and metric type were found valid before, and whose
        value and time pass the value objects' own rule functions, is staged
        without building any value object. Every other row is checked the long
        way, which words each fault and teaches the fast path its email and type.
        """
        now = self.clock.now()
        latest = now + MAX_FUTURE_SKEW
        emails: dict[str, Email | str] = {}  # raw text -> parsed, or why not
        keys: dict[str | None, str] = {}  # raw email -> Email.canonical, once found good
        if default is not None:
            keys[None] = keys[""] = default.canonical
        types: set[str] = set()  # metric types found valid
        count = unreported = 0
        try:
            for row in rows:
                count += 1
                unreported += 1
                if unreported == PROGRESS_EVERY:
                    counted[0] = count
                    if progress is not None:
                        progress(unreported)
                    unreported = 0
                if row.fault is not None:
                    faults.add(row.line, row.fault)
                    continue
                raw_email, metric_type, recorded_at = row.email, row.metric_type, row.recorded_at
                if (
                    (raw_email is None or type(raw_email) is str)
                    and (key := keys.get(raw_email)) is not None
                    and type(metric_type) is str
                    and metric_type in types
                    and type(recorded_at) is str
                ):
                    try:
                        value = parse_metric_value(row.metric_value)
                        moment = parse_timestamp(recorded_at)
                    except ValidationFailed:
                        pass  # the long way below words it
                    else:
                        if moment <= latest:
                            yield StagedMetric(row.line, key, metric_type, value, moment)
                            continue
                staged = self._checked(row, default, emails, now, faults)
                if staged is None:
                    continue
                if type(raw_email) is str and len(keys) < MAX_REMEMBERED:
                    keys[raw_email] = staged.email
                if len(types) < MAX_REMEMBERED:
                    types.add(staged.metric_type)
                yield staged
        finally:
            counted[0] = count
            if unreported and progress is not None:
                progress(unreported)

    def _checked(
        self,
        row: RawRow,
        default: Email | None,
        emails: dict[str, Email | str],
        now: datetime,
        faults: _Faults,
    ) -> StagedMetric | None:
        """One row the long way: its staged metric, or every fault in it worded."""
        problems: list[str] = []
        email = self._email_of(row.email, default, emails, problems)
        draft = None
        if row.recorded_at in (None, ""):
            problems.append("recorded_at is required in a backfill")
        else:
            try:
                draft = MetricDraft.parse(
                    metric_type=row.metric_type,
                    metric_value=row.metric_value,
                    recorded_at=row.recorded_at,
                    now=now,
                )
            except ValidationFailed as exc:
                problems.append(_describe(exc))
        if problems or email is None or draft is None:
            faults.add(row.line, "; ".join(problems))
            return None
        return StagedMetric(
            line=row.line,
            email=email.canonical,
            metric_type=draft.metric_type.value,
            metric_value=draft.metric_value.value,
            recorded_at=draft.recorded_at.value,
        )

    @staticmethod
    def _email_of(
        raw: object, default: Email | None, seen: dict[str, Email | str], problems: list[str]
    ) -> Email | None:
        if raw in (None, ""):
            if default is None:
                problems.append("email is missing (give an email column or --user)")
            return default
        if not isinstance(raw, str):
            problems.append("email must be a string")
            return None
        parsed = seen.get(raw)
        if parsed is None:
            try:
                parsed = Email(raw)
            except ValidationFailed as exc:
                parsed = _describe(exc)
            if len(seen) < MAX_REMEMBERED:  # distinct emails; bounded all the same
                seen[raw] = parsed
        if isinstance(parsed, str):
            problems.append(parsed)
            return None
        if default is not None and parsed != default:
            problems.append(f"email {parsed.value} is not the --user {default.value}")
            return None
        return parsed
