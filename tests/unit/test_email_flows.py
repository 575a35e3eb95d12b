"""The email rules over the fakes: links, their tokens and lifetimes, what each flow
queues in the same unit of work as its change, limits, and delivery with retries."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from attrs import define

from engage_core import testing
from engage_core.errors import (
    Conflict,
    EmailNotVerified,
    Forbidden,
    InvalidToken,
    RateLimited,
    ValidationFailed,
)
from engage_core.mail_templates import Branding
from engage_core.model import Email
from engage_core.ports import MailMessage, MailStatus
from engage_core.services.account_mail import AccountMail
from engage_core.services.auth import AuthPolicy, AuthService, Principal
from engage_core.services.email import EmailFlowPolicy, EmailFlows
from engage_core.services.mail_delivery import DeliveryPolicy, MailDelivery

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new passphrase"


@define
class World:
    clock: testing.FakeClock
    users: testing.InMemoryUserRepository
    sessions: testing.InMemorySessionRepository
    tokens: testing.InMemoryOneTimeTokenRepository
    outbox: testing.InMemoryMailQueue
    auth: AuthService
    flows: EmailFlows
    delivery: MailDelivery
    mailer: testing.FakeMailer
    woken: list[int]

    async def queued(self) -> list[MailMessage]:
        """Every message queued, oldest first."""
        queued = await self.outbox.recent(limit=1000)
        # Oldest first; the fake keeps the order of queueing among equal times.
        return [q.message for q in sorted(queued, key=lambda q: q.created_at)]

    async def mail_to(self, address: str) -> list[MailMessage]:
        return [m for m in await self.queued() if m.to.canonical == address.lower()]

    async def last_token(self, address: str) -> str:
        link = (await self.mail_to(address))[-1].link
        assert link is not None
        return link.rpartition("#token=")[2]

    async def principal(self, email: str, password: str = PASSWORD) -> Principal:
        login = await self.auth.log_in(email=email, password=password)
        return await self.auth.authenticate(login.access_token)


def build(*, require_verified: bool = False) -> World:
    clock = testing.FakeClock()
    users = testing.InMemoryUserRepository()
    sessions = testing.InMemorySessionRepository()
    tokens = testing.InMemoryOneTimeTokenRepository()
    outbox = testing.InMemoryMailQueue()
    testing.link_cascade(users, sessions, tokens)
    uow = testing.InMemoryUnitOfWork(users, sessions, tokens, outbox)
    limiter = testing.InMemoryRateLimiter(clock)
    hasher = testing.FakePasswordHasher()
    woken: list[int] = []
    mail = AccountMail(
        tokens=tokens,
        outbox=outbox,
        clock=clock,
        uow=uow,
        branding=Branding("engage-suite", "https://engage.example"),
        wake=lambda: woken.append(1),
    )
    auth = AuthService(
        users=users,
        sessions=sessions,
        hasher=hasher,
        tokens=testing.FakeTokenIssuer(clock),
        cache=testing.InMemoryCache(clock),
        limiter=limiter,
        clock=clock,
        uow=uow,
        policy=AuthPolicy(require_verified_email=require_verified),
        mail=mail,
    )
    flows = EmailFlows(
        auth=auth,
        mail=mail,
        users=users,
        tokens=tokens,
        hasher=hasher,
        limiter=limiter,
        clock=clock,
        uow=uow,
    )
    mailer = testing.FakeMailer()
    delivery = MailDelivery(outbox, mailer, clock, DeliveryPolicy(max_attempts=3))
    return World(clock, users, sessions, tokens, outbox, auth, flows, delivery, mailer, woken)


@pytest.fixture
def world() -> World:
    return build()


# --- verification -------------------------------------------------------------------


async def test_signing_up_queues_a_verification_link_and_wakes_the_sender(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    [mail] = await world.mail_to("ada@example.com")
    assert mail.link is not None
    assert mail.link.startswith("https://engage.example/verify-email#token=")
    assert world.woken == [1]


async def test_deleting_an_account_drops_its_mail_not_sent_yet(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    await world.auth.sign_up(email="bob@example.com", password=PASSWORD)
    ada = await world.principal("ada@example.com")

    await world.auth.delete_account(ada, password=PASSWORD)

    assert await world.mail_to("ada@example.com") == []
    assert len(await world.mail_to("bob@example.com")) == 1
    delivered = await world.delivery.deliver_due()
    assert len(delivered.attempts) == 1  # bob's verification, no one else's


async def test_a_link_token_has_256_random_bits_and_only_its_hash_is_kept(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    token = await world.last_token("ada@example.com")
    assert len(token) == 43  # 32 bytes, URL-safe base64
    stored = await world.tokens.find(
        hashlib.sha256(token.encode()).hexdigest(),
        next(iter(world.tokens._by_hash.values())).purpose,
        world.clock.now(),
    )
    assert stored is not None
    assert token not in repr(world.tokens._by_hash)


async def test_verifying_marks_the_address_and_spends_the_link(world: World) -> None:
    user = await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    token = await world.last_token("ada@example.com")
    await world.flows.verify_email(token)
    stored = await world.users.get(user.id)
    assert stored is not None
    assert stored.email_verified
    with pytest.raises(InvalidToken):
        await world.flows.verify_email(token)


@pytest.mark.parametrize("token", [None, 42, "", "x" * 15, "x" * 129, "spaces are not ok"])
async def test_anything_that_cannot_be_a_token_is_the_same_refusal(
    world: World, token: object
) -> None:
    for attempt in (
        world.flows.verify_email(token),
        world.flows.confirm_email_change(token),
        world.flows.reset_password(token=token, new_password=NEW_PASSWORD),
    ):
        with pytest.raises(InvalidToken):
            await attempt


@pytest.mark.parametrize(
    ("purpose", "lifetime"),
    [
        ("verify", timedelta(hours=48)),
        ("reset", timedelta(hours=1)),
        ("change", timedelta(hours=24)),
    ],
)
async def test_links_expire(world: World, purpose: str, lifetime: timedelta) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    if purpose == "reset":
        await world.flows.forgot_password(email="ada@example.com", client_address="10.0.0.1")
    if purpose == "change":
        principal = await world.principal("ada@example.com")
        await world.flows.change_email(principal, new_email="ada@new.example", password=PASSWORD)
    address = "ada@new.example" if purpose == "change" else "ada@example.com"
    token = await world.last_token(address)
    world.clock.advance(lifetime)
    use = {
        "verify": lambda: world.flows.verify_email(token),
        "reset": lambda: world.flows.reset_password(token=token, new_password=NEW_PASSWORD),
        "change": lambda: world.flows.confirm_email_change(token),
    }[purpose]
    with pytest.raises(InvalidToken):
        await use()
    world.clock.advance(timedelta(seconds=-1))
    await use()  # a second earlier it worked


async def test_no_verification_mail_for_a_verified_address_and_a_limit_per_user(
    world: World,
) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    principal = await world.principal("ada@example.com")
    for _ in range(5):
        await world.flows.request_verification(principal)
    with pytest.raises(RateLimited):
        await world.flows.request_verification(principal)
    assert len(await world.mail_to("ada@example.com")) == 6
    await world.flows.verify_email(await world.last_token("ada@example.com"))
    await world.flows.request_verification(principal)
    assert len(await world.mail_to("ada@example.com")) == 6


async def test_login_waits_for_verification_when_required() -> None:
    world = build(require_verified=True)
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    with pytest.raises(EmailNotVerified):
        await world.auth.log_in(email="ada@example.com", password=PASSWORD)
    with pytest.raises(EmailNotVerified):
        await world.auth.issue_token(email="ada@example.com", password=PASSWORD)
    await world.flows.verify_email(await world.last_token("ada@example.com"))
    await world.auth.log_in(email="ada@example.com", password=PASSWORD)


# --- forgotten passwords ------------------------------------------------------------


async def test_forgot_password_queues_one_message_either_way(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    await world.flows.forgot_password(email="ada@example.com", client_address="10.0.0.1")
    await world.flows.forgot_password(email="nobody@example.com", client_address="10.0.0.1")
    reset = (await world.mail_to("ada@example.com"))[-1]
    [nobody] = await world.mail_to("nobody@example.com")
    assert reset.link is not None
    assert "/reset-password#token=" in reset.link
    assert nobody.link is None


async def test_forgot_password_limits_per_email_and_per_address(world: World) -> None:
    for _ in range(5):
        await world.flows.forgot_password(email="ada@example.com", client_address="10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        await world.flows.forgot_password(email="ADA@example.com", client_address="10.0.0.2")
    assert refused.value.retry_after > 0
    for number in range(5):
        await world.flows.forgot_password(
            email=f"user{number}@example.com", client_address="10.0.0.1"
        )
    with pytest.raises(RateLimited):
        await world.flows.forgot_password(email="new@example.com", client_address="10.0.0.1")
    world.clock.advance(timedelta(hours=1))
    await world.flows.forgot_password(email="ada@example.com", client_address="10.0.0.1")


def test_one_setting_scales_every_mail_limit() -> None:
    policy = EmailFlowPolicy.per_hour(7)
    assert (policy.forgot_per_email, policy.forgot_per_address) == (7, 14)
    assert policy.verify_requests_per_user == policy.email_changes_per_user == 7


async def test_a_reset_ends_every_session_verifies_and_sends_a_notice(world: World) -> None:
    user = await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    login = await world.auth.log_in(email="ada@example.com", password=PASSWORD)
    await world.flows.forgot_password(email="ada@example.com", client_address="10.0.0.1")
    await world.flows.reset_password(
        token=(await world.last_token("ada@example.com")), new_password=NEW_PASSWORD
    )
    assert await world.sessions.live_devices(user.id, world.clock.now()) == []
    assert (await world.sessions.get(login.session_id)) is not None
    await world.auth.log_in(email="ada@example.com", password=NEW_PASSWORD)
    stored = await world.users.get(user.id)
    assert stored is not None
    assert stored.email_verified
    assert (await world.mail_to("ada@example.com"))[
        -1
    ].subject == "Your engage-suite password was reset"


async def test_a_reset_that_fails_changes_nothing_and_keeps_the_link(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    await world.flows.forgot_password(email="ada@example.com", client_address="10.0.0.1")
    token = await world.last_token("ada@example.com")
    with pytest.raises(ValidationFailed) as refused:
        await world.flows.reset_password(token=token, new_password="short")
    assert [e.field for e in refused.value.errors] == ["new_password"]
    await world.flows.reset_password(token=token, new_password=NEW_PASSWORD)


async def test_a_password_change_voids_reset_and_change_links_and_sends_a_notice(
    world: World,
) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    principal = await world.principal("ada@example.com")
    await world.flows.forgot_password(email="ada@example.com", client_address="10.0.0.1")
    reset = await world.last_token("ada@example.com")
    await world.flows.change_email(principal, new_email="ada@new.example", password=PASSWORD)
    change = await world.last_token("ada@new.example")
    await world.auth.change_password(
        principal, current_password=PASSWORD, new_password=NEW_PASSWORD
    )
    assert (await world.mail_to("ada@example.com"))[
        -1
    ].subject == "Your engage-suite password was changed"
    with pytest.raises(InvalidToken):
        await world.flows.reset_password(token=reset, new_password=PASSWORD)
    with pytest.raises(InvalidToken):
        await world.flows.confirm_email_change(change)


# --- a new address ------------------------------------------------------------------


async def test_an_address_change_needs_the_password_and_a_free_address(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    await world.auth.sign_up(email="bob@example.com", password=PASSWORD)
    principal = await world.principal("ada@example.com")
    queued = len(await world.queued())
    with pytest.raises(Forbidden):
        await world.flows.change_email(principal, new_email="a@new.example", password="wrong pass")
    with pytest.raises(Conflict):
        await world.flows.change_email(principal, new_email="BOB@example.com", password=PASSWORD)
    with pytest.raises(ValidationFailed):
        await world.flows.change_email(principal, new_email="Ada@example.com", password=PASSWORD)
    assert len(await world.queued()) == queued


async def test_an_address_change_mails_both_addresses_and_voids_older_links(
    world: World,
) -> None:
    user = await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    verify = await world.last_token("ada@example.com")
    principal = await world.principal("ada@example.com")
    await world.flows.change_email(principal, new_email="ada@new.example", password=PASSWORD)
    notice = (await world.mail_to("ada@example.com"))[-1]
    assert notice.link is None
    assert "ada@new.example" in notice.text
    changed = await world.flows.confirm_email_change(await world.last_token("ada@new.example"))
    assert (changed.id, changed.email, changed.email_verified) == (
        user.id,
        Email("ada@new.example"),
        True,
    )
    with pytest.raises(InvalidToken):
        await world.flows.verify_email(verify)


async def test_confirming_an_address_taken_meanwhile_changes_nothing(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    principal = await world.principal("ada@example.com")
    await world.flows.change_email(principal, new_email="shared@example.com", password=PASSWORD)
    token = await world.last_token("shared@example.com")
    await world.auth.sign_up(email="shared@example.com", password=PASSWORD)
    with pytest.raises(Conflict):
        await world.flows.confirm_email_change(token)
    assert (await world.auth.me(principal)).email == Email("ada@example.com")


async def test_user_values_are_escaped_in_html(world: World) -> None:
    await world.auth.sign_up(email="o'brien&co@example.com", password=PASSWORD)
    [mail] = await world.mail_to("o'brien&co@example.com")
    assert "o&#x27;brien&amp;co@example.com" in mail.html
    assert "o'brien&co@example.com" not in mail.html
    assert "o'brien&co@example.com" in mail.text


# --- delivery ---------------------------------------------------------------------------


async def test_delivery_sends_what_is_due_and_records_it(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    done = await world.delivery.deliver_due()
    assert [a.outcome for a in done.attempts] == [MailStatus.SENT]
    assert [m.to.value for m in world.mailer.sent] == ["ada@example.com"]
    [record] = await world.delivery.recent()
    assert (record.status, record.message.text) == (MailStatus.SENT, "")
    assert (await world.delivery.deliver_due()).attempts == []


async def test_a_failed_send_is_retried_with_doubling_waits_then_given_up(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    world.mailer.down = True
    first = await world.delivery.deliver_due()
    assert first.next_retry == world.clock.now() + timedelta(seconds=30)
    world.clock.advance(29)
    assert (await world.delivery.deliver_due()).attempts == []
    world.clock.advance(1)
    second = await world.delivery.deliver_due()
    assert second.next_retry == world.clock.now() + timedelta(seconds=60)
    world.clock.advance(60)
    third = await world.delivery.deliver_due()  # the last of 3 attempts
    assert [a.outcome for a in third.attempts] == [MailStatus.FAILED]
    world.clock.advance(timedelta(days=1))
    assert (await world.delivery.deliver_due()).attempts == []

    world.mailer.down = False
    assert await world.delivery.retry_failed() == 1
    assert [a.outcome for a in (await world.delivery.deliver_due()).attempts] == [MailStatus.SENT]
    assert len(world.mailer.sent) == 1


async def test_a_sent_message_whose_record_failed_is_recorded_not_sent_again(
    world: World,
) -> None:
    """The database goes away between the send and its record: the message must not
    be claimed and sent a second time once the claim's lease has run out."""
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    outbox, unreachable = world.outbox, OSError("the database is unreachable")

    class LosingRecords:
        """The outbox, its "sent" records failing while ``down``."""

        down = True

        def __getattr__(self, name: str) -> Any:
            return getattr(outbox, name)

        async def mark_sent(self, message_id: UUID, at: datetime, receipt: str) -> None:
            if self.down:
                raise unreachable
            await outbox.mark_sent(message_id, at, receipt)

    queue = LosingRecords()
    delivery = MailDelivery(queue, world.mailer, world.clock, DeliveryPolicy(max_attempts=3))
    with pytest.raises(OSError, match="unreachable"):
        await delivery.deliver_due()
    world.clock.advance(timedelta(minutes=10))  # past the claim's lease
    with pytest.raises(OSError, match="unreachable"):  # still away: nothing is claimed
        await delivery.deliver_due()
    queue.down = False
    assert (await delivery.deliver_due()).attempts == []
    world.clock.advance(timedelta(hours=1))
    assert (await delivery.deliver_due()).attempts == []
    assert [m.to.value for m in world.mailer.sent] == ["ada@example.com"]
    [record] = await world.delivery.recent()
    assert (record.status, record.receipt) == (MailStatus.SENT, "250 queued as 1")


async def test_a_refused_address_is_given_up_at_once(world: World) -> None:
    await world.auth.sign_up(email="ada@example.com", password=PASSWORD)
    world.mailer.refuse = True
    done = await world.delivery.deliver_due()
    assert [(a.outcome, a.retry_at) for a in done.attempts] == [(MailStatus.FAILED, None)]


def test_the_retry_wait_is_capped(world: World) -> None:
    assert world.delivery.retry_delay(1) == timedelta(seconds=30)
    assert world.delivery.retry_delay(3) == timedelta(seconds=120)
    assert world.delivery.retry_delay(50) == timedelta(hours=1)


async def test_a_slow_mail_server_never_gets_a_message_from_two_senders(world: World) -> None:
    """Each send takes 20 s, so a whole batch outlasts the lease of its claim; a second
    sender (another worker) that looks meanwhile must not get messages the first one
    still means to send."""
    policy = DeliveryPolicy(lease=timedelta(minutes=5), batch=20)
    other_mailer = testing.FakeMailer()
    other = MailDelivery(world.outbox, other_mailer, world.clock, policy)
    clock = world.clock

    class SlowMailer(testing.FakeMailer):
        async def send(self, message: MailMessage) -> str:
            clock.advance(20)
            receipt = await super().send(message)
            await other.deliver_due()  # the other worker's sender wakes meanwhile
            return receipt

    slow = SlowMailer()
    first = MailDelivery(world.outbox, slow, world.clock, policy)
    for n in range(20):
        await world.auth.sign_up(email=f"user{n}@example.com", password=PASSWORD)

    while (await first.deliver_due()).attempts:
        pass

    sent = [m.id for m in slow.sent + other_mailer.sent]
    assert len(sent) == len(set(sent)) == 20
