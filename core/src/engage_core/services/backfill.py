"""Bulk loading and export of metrics, for operators.

A backfill checks every row with the API's rules while the store loads the
good ones, in one transaction, in one pass (memory stays flat whatever the
file's size). The store then checks every email is a user's, and commits only
if no row at all was bad: one bad row (or unknown email) and nothing is
stored. Rows already stored (same user, type, time and value) are skipped, so
loading a file twice does not double-count.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from datetime import datetime
from uuid import UUID

from attrs import define, field, frozen

from engage_core.errors import ValidationFailed
from engage_core.model import (
    MAX_FUTURE_SKEW,
    Email,
    MetricDraft,
    MetricType,
    parse_metric_value,
    parse_timestamp,
)
from engage_core.ports import (
    MAX_REPORTED_FAULTS,
    BulkMetricStore,
    Clock,
    ExportedMetric,
    RowFault,
    StagedMetric,
)

__all__ = [
    "MAX_REMEMBERED",
    "MAX_REPORTED_FAULTS",
    "PROGRESS_EVERY",
    "BackfillReport",
    "BackfillService",
    "RawRow",
]

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


class _Refused(Exception):
    """A row the rules refuse, with every fault in it worded."""


@frozen
class _Problem:
    """Why an email cannot own a row (a verdict kept, unlike an exception)."""

    message: str


def _describe(exc: ValidationFailed) -> str:
    return "; ".join(f"{e.field} {e.message}" for e in exc.errors)


@functools.lru_cache(maxsize=MAX_REMEMBERED)  # a file names few distinct types
def _known_metric_type(raw: str) -> str:
    return MetricType(raw).value


def _metric_type(raw: object) -> str:
    """The text of the row's metric type; ``ValidationFailed`` if it is not one."""
    return _known_metric_type(raw) if isinstance(raw, str) else MetricType(raw).value


@define
class _BackfillRules:
    """The API's rules for one backfill row, and the backfill's own: the email is a
    valid address (the ``--user``'s, when given; the ``--user`` when left out) and
    ``recorded_at`` is required."""

    owner: Email | None
    now: datetime
    latest: datetime = field(init=False)  # recorded_at may not be later
    # email-validator is slow, and a file names few distinct emails: each is judged once.
    _email_verdict: Callable[[str], str | _Problem] = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.latest = self.now + MAX_FUTURE_SKEW
        self._email_verdict = functools.lru_cache(maxsize=MAX_REMEMBERED)(self._judge_email)

    def staged(self, row: RawRow) -> StagedMetric:
        """The row as it goes to the store; ``_Refused`` with every fault worded if bad."""
        if row.fault is not None:
            raise _Refused(row.fault)
        try:
            staged = StagedMetric(  # by position: keywords double a named tuple's cost
                row.line,
                self._owner_of(row.email),
                _metric_type(row.metric_type),
                parse_metric_value(row.metric_value),
                parse_timestamp(row.recorded_at),
            )
        except (ValidationFailed, _Refused):
            staged = None
        if staged is None or staged.recorded_at > self.latest:
            # The first fault stopped the checks; the API words every fault of a row.
            raise _Refused(self._faults_of(row))
        return staged

    def _owner_of(self, raw: object) -> str:
        """The canonical email of the row's owner."""
        if raw is None or raw == "":
            if self.owner is None:
                raise _Refused("email is missing (give an email column or --user)")
            return self.owner.canonical
        if not isinstance(raw, str):
            raise _Refused("email must be a string")
        verdict = self._email_verdict(raw)
        if isinstance(verdict, _Problem):
            raise _Refused(verdict.message)
        return verdict

    def _judge_email(self, raw: str) -> str | _Problem:
        try:
            email = Email(raw)
        except ValidationFailed as exc:
            return _Problem(_describe(exc))
        if self.owner is not None and email != self.owner:
            return _Problem(f"email {email.value} is not the --user {self.owner.value}")
        return email.canonical

    def _faults_of(self, row: RawRow) -> str:
        """Every fault of a refused row, worded as the API words them."""
        problems = []
        try:
            self._owner_of(row.email)
        except _Refused as refused:
            problems.append(str(refused))
        if row.recorded_at is None or row.recorded_at == "":
            problems.append("recorded_at is required in a backfill")
        else:
            try:
                MetricDraft.parse(
                    metric_type=row.metric_type,
                    metric_value=row.metric_value,
                    recorded_at=row.recorded_at,
                    now=self.now,
                )
            except ValidationFailed as exc:
                problems.append(_describe(exc))
        return "; ".join(problems)


@define
class _Tally:
    """What a backfill has read so far: its rows, and its bad ones (the first few kept)."""

    progress: Callable[[int], None] | None
    rows: int = 0
    fault_count: int = 0
    faults: list[RowFault] = field(factory=list)
    _unreported: int = 0

    def read(self) -> None:
        self.rows += 1
        self._unreported += 1
        if self._unreported == PROGRESS_EVERY:
            self.report_progress()

    def refuse(self, fault: RowFault) -> None:
        self.fault_count += 1
        if len(self.faults) < MAX_REPORTED_FAULTS:
            self.faults.append(fault)

    def report_progress(self) -> None:
        if self._unreported and self.progress is not None:
            self.progress(self._unreported)
        self._unreported = 0


def _valid_rows(
    rows: Iterable[RawRow], rules: _BackfillRules, tally: _Tally
) -> Iterator[StagedMetric]:
    """The rows the rules take, in order; the others are counted in ``tally``."""
    try:
        for row in rows:
            tally.read()
            try:
                staged = rules.staged(row)
            except _Refused as refused:
                tally.refuse(RowFault(row.line, str(refused)))
                continue
            yield staged
    finally:
        tally.report_progress()


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
        """Validate and load ``rows`` (all or nothing); with ``dry_run``, only validate.

        ``progress`` is told of every ``PROGRESS_EVERY`` rows read (and the rest at the end).
        """
        owner = Email(user_email) if user_email is not None else None
        tally = _Tally(progress)
        outcome = await self.store.load(
            _valid_rows(rows, _BackfillRules(owner, self.clock.now()), tally),
            commit=lambda: tally.fault_count == 0 and not dry_run,
        )
        faults = sorted([*tally.faults, *outcome.unknown_emails], key=lambda f: f.line)
        return BackfillReport(
            rows=tally.rows,
            inserted=outcome.inserted if outcome.committed else 0,
            skipped=outcome.skipped if outcome.committed else 0,
            faults=tuple(faults[:MAX_REPORTED_FAULTS]),
            fault_count=tally.fault_count + outcome.unknown_email_rows,
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
