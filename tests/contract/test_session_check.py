"""Contract of SessionRepository.run_checked: work done behind its session's check.

The fake checks first and runs the work only for a live session; PostgreSQL sends
the check with the work's first statement. Either way a refused session gets
nothing read and keeps nothing written, and the rule is ``Session.is_live``'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest

from engage_core.model import MetricDraft, Session
from engage_core.ports import SessionRefused
from engage_core.queries import MetricPageQuery
from engage_core.testing import FakeClock

if TYPE_CHECKING:
    from conftest import CheckedStorage

LIFETIME = timedelta(days=14)
Work = Callable[["CheckedStorage", UUID, datetime], Awaitable[Any]]


def _session(user_id: UUID, at: datetime, lifetime: timedelta = LIFETIME) -> Session:
    session_id = uuid4()
    return Session(
        id=session_id,
        user_id=user_id,
        family_id=uuid4(),
        token_hash=f"hash-{session_id.hex}",
        created_at=at,
        expires_at=at + lifetime,
    )


def _draft(now: datetime) -> MetricDraft:
    return MetricDraft.parse(metric_type="page_view", metric_value="1.5", recorded_at=None, now=now)


async def _metrics_of(storage: CheckedStorage, user_id: UUID) -> list[Any]:
    return list(await storage.metrics.page(user_id, MetricPageQuery(limit=100)))


async def _add_metric(storage: CheckedStorage, user_id: UUID, now: datetime) -> Any:
    return await storage.metrics.add(user_id, _draft(now))


async def _add_metrics(storage: CheckedStorage, user_id: UUID, now: datetime) -> Any:
    return await storage.metrics.add_many(user_id, [_draft(now), _draft(now)])


async def _read_then_write(storage: CheckedStorage, user_id: UUID, now: datetime) -> Any:
    await _metrics_of(storage, user_id)
    return await _add_metric(storage, user_id, now)


async def _add_session(storage: CheckedStorage, user_id: UUID, now: datetime) -> Any:
    await storage.sessions.add(_session(user_id, now))


WRITES: dict[str, Work] = {
    "one metric": _add_metric,
    "a batch": _add_metrics,
    "a read, then a write": _read_then_write,
    "a session": _add_session,
}


async def test_a_live_session_gets_the_work_s_result(
    checked_storage: CheckedStorage, clock: FakeClock
) -> None:
    storage, now = checked_storage, clock.now()
    user_id = await storage.new_user()
    session = _session(user_id, now)
    await storage.sessions.add(session)

    outcome = await storage.sessions.run_checked(
        session.id, user_id, now, lambda: _add_metric(storage, user_id, now)
    )

    assert not isinstance(outcome, SessionRefused)
    checked, metric = outcome
    assert checked == session
    assert await _metrics_of(storage, user_id) == [metric]


async def test_a_live_session_reads_what_is_stored(
    checked_storage: CheckedStorage, clock: FakeClock
) -> None:
    storage, now = checked_storage, clock.now()
    user_id = await storage.new_user()
    session = _session(user_id, now)
    await storage.sessions.add(session)
    written = await _add_metric(storage, user_id, now)

    outcome = await storage.sessions.run_checked(
        session.id, user_id, now, lambda: _metrics_of(storage, user_id)
    )

    assert outcome == (session, [written])


async def _refused_case(
    storage: CheckedStorage, case: str, now: datetime
) -> tuple[UUID, UUID, datetime, bool]:
    """A session id, the user the work is for, the moment and whether the refusal
    says the session ended, for each way a session may not be used."""
    user_id = await storage.new_user()
    session = _session(user_id, now)
    await storage.sessions.add(session)
    if case == "ended":
        await storage.sessions.end_family(session.family_id, now, "logged out")
        return session.id, user_id, now + timedelta(seconds=1), True
    if case == "expired":
        return session.id, user_id, session.expires_at, True
    if case == "another user's":
        return session.id, await storage.new_user(), now, False
    assert case == "unknown"
    return uuid4(), user_id, now, False


@pytest.mark.parametrize("case", ["ended", "expired", "another user's", "unknown"])
@pytest.mark.parametrize("write", list(WRITES))
async def test_a_refused_session_keeps_nothing_the_work_wrote(
    checked_storage: CheckedStorage, clock: FakeClock, case: str, write: str
) -> None:
    storage = checked_storage
    session_id, user_id, at, ended = await _refused_case(storage, case, clock.now())
    devices = await storage.sessions.live_devices(user_id, at)

    outcome = await storage.sessions.run_checked(
        session_id, user_id, at, lambda: WRITES[write](storage, user_id, at)
    )

    assert outcome == SessionRefused(ended=ended)
    assert not await _metrics_of(storage, user_id)
    assert await storage.sessions.live_devices(user_id, at) == devices


@pytest.mark.parametrize("case", ["ended", "expired", "another user's", "unknown"])
async def test_a_refused_session_reads_nothing(
    checked_storage: CheckedStorage, clock: FakeClock, case: str
) -> None:
    storage = checked_storage
    session_id, user_id, at, ended = await _refused_case(storage, case, clock.now())
    await _add_metric(storage, user_id, clock.now())

    outcome = await storage.sessions.run_checked(
        session_id, user_id, at, lambda: _metrics_of(storage, user_id)
    )

    assert outcome == SessionRefused(ended=ended)


async def test_the_work_s_error_is_raised_for_a_live_session_only(
    checked_storage: CheckedStorage, clock: FakeClock
) -> None:
    storage, now = checked_storage, clock.now()
    user_id = await storage.new_user()
    live, ended = _session(user_id, now), _session(user_id, now)
    await storage.sessions.add(live)
    await storage.sessions.add(ended)
    await storage.sessions.end_family(ended.family_id, now, "logged out")

    async def failing() -> None:
        await _metrics_of(storage, user_id)
        raise LookupError("the work failed")

    with pytest.raises(LookupError, match="the work failed"):
        await storage.sessions.run_checked(live.id, user_id, now, failing)
    assert await storage.sessions.run_checked(ended.id, user_id, now, failing) == SessionRefused(
        ended=True
    )


@pytest.mark.parametrize(
    ("ended", "offset"),
    [
        (False, -timedelta(microseconds=1)),
        (False, timedelta(0)),
        (False, timedelta(microseconds=1)),
        (True, -timedelta(days=1)),
        (True, timedelta(0)),
    ],
)
async def test_the_check_follows_session_is_live(
    checked_storage: CheckedStorage, clock: FakeClock, ended: bool, offset: timedelta
) -> None:
    """At, just before and just after a session's end or expiry, the check lets the
    work through exactly when ``Session.is_live`` says so."""
    storage, now = checked_storage, clock.now()
    user_id = await storage.new_user()
    session = _session(user_id, now, lifetime=timedelta(hours=1))
    await storage.sessions.add(session)
    at = session.expires_at + offset
    if ended:
        await storage.sessions.end_family(session.family_id, now, "logged out")
        at = now + timedelta(minutes=30) + offset
    stored = await storage.sessions.get(session.id)
    assert stored is not None

    outcome = await storage.sessions.run_checked(
        session.id, user_id, at, lambda: _metrics_of(storage, user_id)
    )

    if stored.is_live(at):
        assert outcome == (stored, [])
    else:
        assert outcome == SessionRefused(ended=True)
    assert stored.is_live(at) is (not ended and offset < timedelta(0))
