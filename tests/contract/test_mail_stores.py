"""Contracts of the email stores: OneTimeTokenRepository, MailQueue, and the user
repository's address changes; each in memory and in PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.mail_queue import PostgresMailQueue
from engage_adapters.postgres.tokens import PostgresOneTimeTokenRepository
from engage_adapters.postgres.users import PostgresUserRepository
from engage_core.errors import Conflict
from engage_core.model import Email, OneTimeToken, TokenPurpose, User
from engage_core.ports import (
    MailMessage,
    MailQueue,
    MailStatus,
    OneTimeTokenRepository,
    UserRepository,
)
from engage_core.testing import (
    FakeClock,
    InMemoryMailQueue,
    InMemoryOneTimeTokenRepository,
    InMemoryUserRepository,
)

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def _user(email: str) -> User:
    return User(id=uuid4(), email=Email(email), password_hash="x", created_at=T0, updated_at=T0)


@pytest.fixture(params=["memory", "postgres"])
def stores(
    request: pytest.FixtureRequest,
) -> tuple[UserRepository, OneTimeTokenRepository, MailQueue]:
    # Sync, so that it can reach the async pg_pool fixture (see tests/contract/conftest.py).
    if request.param == "memory":
        return InMemoryUserRepository(), InMemoryOneTimeTokenRepository(), InMemoryMailQueue()
    pool: AsyncConnectionPool = request.getfixturevalue("pg_pool")
    with psycopg.connect(request.getfixturevalue("pg_url"), autocommit=True) as conn:
        conn.execute("TRUNCATE mail_outbox")
    return (
        PostgresUserRepository(pool),
        PostgresOneTimeTokenRepository(pool),
        PostgresMailQueue(pool),
    )


async def _owner(users: UserRepository, email: str = "ada@example.com") -> User:
    user = _user(email)
    await users.add(user)
    return user


def _token(user: User, purpose: TokenPurpose, token_hash: str = "a" * 64) -> OneTimeToken:
    return OneTimeToken(
        token_hash=token_hash,
        purpose=purpose,
        user_id=user.id,
        email=user.email,
        created_at=T0,
        expires_at=T0 + timedelta(hours=1),
    )


# --- one-time tokens ------------------------------------------------------------------


async def test_a_token_is_used_once(
    stores: tuple[UserRepository, OneTimeTokenRepository, MailQueue],
) -> None:
    users, tokens, _ = stores
    user = await _owner(users)
    await tokens.add(_token(user, TokenPurpose.RESET_PASSWORD))
    assert await tokens.find("a" * 64, TokenPurpose.RESET_PASSWORD, T0) is not None
    used = await tokens.use("a" * 64, TokenPurpose.RESET_PASSWORD, T0)
    assert used is not None
    assert (used.user_id, used.email) == (user.id, user.email)
    assert await tokens.use("a" * 64, TokenPurpose.RESET_PASSWORD, T0) is None
    assert await tokens.find("a" * 64, TokenPurpose.RESET_PASSWORD, T0) is None


async def test_a_token_serves_its_purpose_only_and_not_after_it_expires(
    stores: tuple[UserRepository, OneTimeTokenRepository, MailQueue],
) -> None:
    users, tokens, _ = stores
    user = await _owner(users)
    await tokens.add(_token(user, TokenPurpose.VERIFY_EMAIL))
    assert await tokens.use("a" * 64, TokenPurpose.RESET_PASSWORD, T0) is None
    assert await tokens.use("b" * 64, TokenPurpose.VERIFY_EMAIL, T0) is None
    expiry = T0 + timedelta(hours=1)
    assert await tokens.use("a" * 64, TokenPurpose.VERIFY_EMAIL, expiry) is None
    assert await tokens.use("a" * 64, TokenPurpose.VERIFY_EMAIL, expiry - timedelta(seconds=1))


async def test_of_concurrent_uses_exactly_one_gets_the_token(
    stores: tuple[UserRepository, OneTimeTokenRepository, MailQueue],
) -> None:
    users, tokens, _ = stores
    user = await _owner(users)
    await tokens.add(_token(user, TokenPurpose.CHANGE_EMAIL))
    results = await asyncio.gather(
        *(tokens.use("a" * 64, TokenPurpose.CHANGE_EMAIL, T0) for _ in range(4))
    )
    assert len([r for r in results if r is not None]) == 1


async def test_revoking_uses_up_the_users_tokens_of_those_purposes(
    stores: tuple[UserRepository, OneTimeTokenRepository, MailQueue],
) -> None:
    users, tokens, _ = stores
    ada, bob = await _owner(users), await _owner(users, "bob@example.com")
    await tokens.add(_token(ada, TokenPurpose.RESET_PASSWORD, "1" * 64))
    await tokens.add(_token(ada, TokenPurpose.VERIFY_EMAIL, "2" * 64))
    await tokens.add(_token(bob, TokenPurpose.RESET_PASSWORD, "3" * 64))
    assert await tokens.revoke(ada.id, (TokenPurpose.RESET_PASSWORD,), T0) == 1
    assert await tokens.use("1" * 64, TokenPurpose.RESET_PASSWORD, T0) is None
    assert await tokens.use("2" * 64, TokenPurpose.VERIFY_EMAIL, T0) is not None
    assert await tokens.use("3" * 64, TokenPurpose.RESET_PASSWORD, T0) is not None


# --- the outbox -----------------------------------------------------------------------


def _mail(to: str = "ada@example.com") -> MailMessage:
    return MailMessage(to=Email(to), subject="Hi", text="text", html="<p>html</p>", link="x")


async def test_a_queued_message_is_claimed_once_until_its_lease_ends(
    stores: tuple[UserRepository, OneTimeTokenRepository, MailQueue],
) -> None:
    _, _, queue = stores
    message = _mail()
    await queue.enqueue(message, T0)
    [claimed] = await queue.claim(T0, limit=10, lease=LEASE)
    assert claimed.message == message
    assert (claimed.status, claimed.attempts) == (MailStatus.QUEUED, 1)
    assert await queue.claim(T0 + LEASE - timedelta(seconds=1), limit=10, lease=LEASE) == []
    [again] = await queue.claim(T0 + LEASE, limit=10, lease=LEASE)  # its sender died
    assert again.attempts == 2


async def test_concurrent_claims_never_share_a_message(
    stores: tuple[UserRepository, OneTimeTokenRepository, MailQueue],
) -> None:
    _, _, queue = stores
    for number in range(12):
        await queue.enqueue(_mail(f"user{number}@example.com"), T0 + timedelta(seconds=number))
    later = T0 + timedelta(minutes=1)
    rounds = await asyncio.gather(*(queue.claim(later, limit=5, lease=LEASE) for _ in range(4)))
    ids = [item.message.id for batch in rounds for item in batch]
    assert len(ids) == len(set(ids)) == 12


async def test_a_sent_message_keeps_its_record_but_not_its_body(
    stores: tuple[UserRepository, OneTimeTokenRepository, MailQueue],
) -> None:
    _, _, queue = stores
    message = _mail()
    await queue.enqueue(message, T0)
    await queue.claim(T0, limit=1, lease=LEASE)
    await queue.mark_sent(message.id, T0 + timedelta(seconds=1), "250 OK")
    [sent] = await queue.recent(limit=10)
    assert (sent.status, sent.sent_at, sent.receipt) == (
        MailStatus.SENT,
        T0 + timedelta(seconds=1),
        "250 OK",
    )
    assert (sent.message.text, sent.message.html, sent.message.link) == ("", "", None)
    assert sent.message.to == message.to
    assert await queue.claim(T0 + timedelta(hours=1), limit=10, lease=LEASE) == []


async def test_a_failed_attempt_is_due_again_at_its_retry_or_failed_for_good(
    stores: tuple[UserRepository, OneTimeTokenRepository, MailQueue],
) -> None:
    _, _, queue = stores
    retried, given_up = _mail("a@example.com"), _mail("b@example.com")
    for message in (retried, given_up):
        await queue.enqueue(message, T0)
    await queue.claim(T0, limit=10, lease=LEASE)
    await queue.mark_failed(retried.id, T0, "421 busy", retry_at=T0 + timedelta(seconds=30))
    await queue.mark_failed(given_up.id, T0, "550 no such user", retry_at=None)
    assert await queue.claim(T0 + timedelta(seconds=29), limit=10, lease=LEASE) == []
    [due] = await queue.claim(T0 + timedelta(seconds=30), limit=10, lease=LEASE)
    assert (due.message.id, due.last_error) == (retried.id, "421 busy")
    statuses = {q.message.id: q.status for q in await queue.recent(limit=10)}
    assert statuses[given_up.id] is MailStatus.FAILED

    assert await queue.requeue_failed(T0 + timedelta(hours=1)) == 1
    claimed = await queue.claim(T0 + timedelta(hours=1), limit=10, lease=LEASE)
    assert {q.message.id: q.attempts for q in claimed}[given_up.id] == 1  # a fresh start


async def test_dropping_a_recipients_unsent_mail_keeps_what_was_sent_and_others_mail(
    stores: tuple[UserRepository, OneTimeTokenRepository, MailQueue],
) -> None:
    _, _, queue = stores
    sent, queued, failed = (_mail("gone@example.com") for _ in range(3))
    other = _mail("kept@example.com")
    for message in (sent, queued, failed, other):
        await queue.enqueue(message, T0)
    await queue.claim(T0, limit=10, lease=LEASE)
    await queue.mark_sent(sent.id, T0, "250 OK")
    await queue.mark_failed(failed.id, T0, "550 no such user", retry_at=None)
    await queue.mark_failed(queued.id, T0, "421 busy", retry_at=T0)

    assert await queue.drop_unsent("gone@example.com") == 2

    left = {q.message.id for q in await queue.recent(limit=10)}
    assert left == {sent.id, other.id}
    assert await queue.requeue_failed(T0) == 0


async def test_recent_lists_newest_first(
    stores: tuple[UserRepository, OneTimeTokenRepository, MailQueue],
) -> None:
    _, _, queue = stores
    for number in range(3):
        await queue.enqueue(_mail(f"user{number}@example.com"), T0 + timedelta(seconds=number))
    recent = await queue.recent(limit=2)
    assert [q.message.to.value for q in recent] == ["user2@example.com", "user1@example.com"]


# --- addresses ------------------------------------------------------------------------


async def test_an_address_is_verified_only_while_it_is_the_users(
    user_repository: UserRepository, clock: FakeClock
) -> None:
    user = _user("ada@example.com")
    await user_repository.add(user)
    assert not await user_repository.mark_email_verified(user.id, Email("old@example.com"), T0)
    assert await user_repository.mark_email_verified(user.id, Email("ADA@example.com"), T0)
    stored = await user_repository.get(user.id)
    assert stored is not None
    assert stored.email_verified


async def test_a_changed_address_is_verified_and_found_by_the_new_one_only(
    user_repository: UserRepository,
) -> None:
    user = _user("ada@example.com")
    await user_repository.add(user)
    assert await user_repository.change_email(user.id, Email("Ada@New.example"), T0)
    assert await user_repository.get_by_email("ada@example.com") is None
    moved = await user_repository.get_by_email("ada@new.example")
    assert moved is not None
    assert (moved.id, moved.email.value, moved.email_verified) == (user.id, "Ada@new.example", True)
    await user_repository.add(_user("ada@example.com"))  # the old address is free again


async def test_an_address_another_account_has_is_a_conflict(
    user_repository: UserRepository,
) -> None:
    ada, bob = _user("ada@example.com"), _user("bob@example.com")
    for user in (ada, bob):
        await user_repository.add(user)
    with pytest.raises(Conflict):
        await user_repository.change_email(ada.id, Email("BOB@example.com"), T0)
    assert not await user_repository.change_email(uuid4(), Email("new@example.com"), T0)
    assert isinstance(ada.id, UUID)
