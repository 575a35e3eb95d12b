"""Contract of ActivityRepository: append, read newest first with filters and keyset, purge."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from engage_core.model import ActivityEntry, ActivityKind, Client
from engage_core.ports import ActivityQuery, ActivityRepository
from engage_core.testing import FakeClock

if TYPE_CHECKING:
    from conftest import Subject


def _entry(
    kind: ActivityKind, user_id: UUID | None, at: object, email: str = "a@example.com"
) -> ActivityEntry:
    return ActivityEntry(
        kind=kind,
        at=at,  # type: ignore[arg-type]
        user_id=user_id,
        email=email,
        client=Client(ip="2001:db8::1", user_agent="Mozilla/5.0"),
    )


async def test_entries_come_back_newest_first_with_what_was_recorded(
    activity_repository: Subject[ActivityRepository], clock: FakeClock
) -> None:
    repo, user_id = activity_repository.impl, await activity_repository.new_user()
    start = clock.now()
    for minutes, kind in enumerate([ActivityKind.SIGNUP, ActivityKind.LOGIN, ActivityKind.LOGOUT]):
        await repo.add(_entry(kind, user_id, start + timedelta(minutes=minutes)))

    found = await repo.page(ActivityQuery(user_id=user_id))

    assert [e.kind for e in found] == [ActivityKind.LOGOUT, ActivityKind.LOGIN, ActivityKind.SIGNUP]
    assert found[0].at == start + timedelta(minutes=2)
    assert found[0].client == Client(ip="2001:db8::1", user_agent="Mozilla/5.0")
    assert found[0].email == "a@example.com"
    assert len({e.id for e in found}) == 3


async def test_keyset_pages_cover_every_entry_once_even_at_equal_times(
    activity_repository: Subject[ActivityRepository], clock: FakeClock
) -> None:
    repo, user_id = activity_repository.impl, await activity_repository.new_user()
    for _ in range(7):
        await repo.add(_entry(ActivityKind.LOGIN, user_id, clock.now()))

    seen: list[int] = []
    after = None
    while True:
        page = await repo.page(ActivityQuery(user_id=user_id, limit=3, after=after))
        seen.extend(e.id for e in page)
        if len(page) < 3:
            break
        after = (page[-1].at, page[-1].id)

    assert len(seen) == 7
    assert len(set(seen)) == 7


async def test_filters_by_user_email_kind_and_time(
    activity_repository: Subject[ActivityRepository], clock: FakeClock
) -> None:
    repo = activity_repository.impl
    alice, bob = await activity_repository.new_user(), await activity_repository.new_user()
    start = clock.now()
    await repo.add(_entry(ActivityKind.LOGIN, alice, start, "alice@example.com"))
    await repo.add(_entry(ActivityKind.LOGIN_FAILED, bob, start, "bob@example.com"))
    await repo.add(
        _entry(ActivityKind.LOGIN_FAILED, None, start + timedelta(hours=1), "nobody@example.com")
    )

    def kinds(found: object) -> list[str]:
        return sorted(e.kind.value for e in found)  # type: ignore[attr-defined]

    assert kinds(await repo.page(ActivityQuery(user_id=alice))) == ["login"]
    assert kinds(await repo.page(ActivityQuery(email="nobody@example.com"))) == ["login.failed"]
    failed = await repo.page(ActivityQuery(kind=ActivityKind.LOGIN_FAILED))
    assert {e.email for e in failed} >= {"bob@example.com", "nobody@example.com"}
    recent = await repo.page(ActivityQuery(since=start + timedelta(minutes=30)))
    assert [e.email for e in recent] == ["nobody@example.com"]


async def test_purge_deletes_only_what_is_older(
    activity_repository: Subject[ActivityRepository], clock: FakeClock
) -> None:
    repo, user_id = activity_repository.impl, await activity_repository.new_user()
    old, new = clock.now() - timedelta(days=91), clock.now()
    await repo.add(_entry(ActivityKind.LOGIN, user_id, old))
    await repo.add(_entry(ActivityKind.LOGOUT, user_id, new))

    assert await repo.purge(clock.now() - timedelta(days=90)) >= 1

    assert [e.kind for e in await repo.page(ActivityQuery(user_id=user_id))] == [
        ActivityKind.LOGOUT
    ]
