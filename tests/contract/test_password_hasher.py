"""Contract of PasswordHasher, then what only the bcrypt adapter promises."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator

import bcrypt
import pytest

from engage_adapters.bcrypt_hasher import BcryptPasswordHasher
from engage_core.model import Password
from engage_core.ports import PasswordHasher

CORRECT = Password("correct horse battery staple")
WRONG = Password("correct horse battery stapler")

# Strings no hasher of ours ever produced, including broken forms of each format we know.
UNREADABLE_HASHES = {
    "empty": "",
    "word": "garbage",
    "dollar": "$",
    "dollars": "$$$",
    "nul": "\x00",
    "non-ascii": "ünïcødé",
    "bcrypt-bare-prefix": "$2b$",
    "bcrypt-truncated": "$2b$04$tooshort",
    "bcrypt-non-ascii": "$2b$04$" + "é" * 53,
    "bcrypt-bad-cost": "$2x$99$" + "A" * 53,
    "bcrypt-sha256-bare-prefix": "bcrypt-sha256$",
    "bcrypt-sha256-word": "bcrypt-sha256$garbage",
    "bcrypt-sha256-non-ascii": "bcrypt-sha256$$2b$04$" + "é" * 53,
    "fake-bare-prefix": "fake$",
    "fake-empty-parts": "fake$1$$",
    "fake-non-ascii-digest": "fake$1$0011223344556677$" + "é" * 64,
    "argon2": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
    "django-pbkdf2": "pbkdf2_sha256$870000$c2FsdA$aGFzaA==",
}


# --- every implementation -------------------------------------------------------


async def test_a_hash_verifies_its_password(password_hasher: PasswordHasher) -> None:
    password_hash = await password_hasher.hash(CORRECT)

    assert await password_hasher.verify(CORRECT, password_hash) is True


async def test_a_wrong_password_does_not_verify(password_hasher: PasswordHasher) -> None:
    password_hash = await password_hasher.hash(CORRECT)

    assert await password_hasher.verify(WRONG, password_hash) is False


async def test_hashes_are_salted(password_hasher: PasswordHasher) -> None:
    first = await password_hasher.hash(CORRECT)
    second = await password_hasher.hash(CORRECT)

    assert first != second
    assert await password_hasher.verify(CORRECT, first)
    assert await password_hasher.verify(CORRECT, second)


@pytest.mark.parametrize("password_hash", UNREADABLE_HASHES.values(), ids=UNREADABLE_HASHES.keys())
async def test_an_unreadable_hash_verifies_false_and_never_raises(
    password_hasher: PasswordHasher, password_hash: str
) -> None:
    assert await password_hasher.verify(CORRECT, password_hash) is False


@pytest.mark.parametrize(
    "password",
    [
        pytest.param(Password("p" * 80), id="80-bytes"),
        pytest.param(Password("é" * 256), id="256-accented-chars"),
        pytest.param(Password("🔑" * 256), id="256-emoji"),
    ],
)
async def test_long_and_multibyte_passwords_hash_and_verify(
    password_hasher: PasswordHasher, password: Password
) -> None:
    password_hash = await password_hasher.hash(password)

    assert await password_hasher.verify(password, password_hash) is True
    assert await password_hasher.verify(CORRECT, password_hash) is False


async def test_passwords_sharing_their_first_72_bytes_are_different(
    password_hasher: PasswordHasher,
) -> None:
    one, other = Password("a" * 72 + "one"), Password("a" * 72 + "other")

    one_hash = await password_hasher.hash(one)
    other_hash = await password_hasher.hash(other)

    assert await password_hasher.verify(other, one_hash) is False
    assert await password_hasher.verify(one, other_hash) is False


async def test_a_fresh_hash_needs_no_rehash(password_hasher: PasswordHasher) -> None:
    password_hash = await password_hasher.hash(CORRECT)

    assert password_hasher.needs_rehash(password_hash) is False


@pytest.mark.parametrize("password_hash", ["", "garbage", "$2b$", "bcrypt-sha256$", "fake$"])
def test_a_garbage_hash_needs_rehash(password_hasher: PasswordHasher, password_hash: str) -> None:
    assert password_hasher.needs_rehash(password_hash) is True


# --- bcrypt only ----------------------------------------------------------------


@pytest.fixture
async def bcrypt_hashers() -> AsyncIterator[list[BcryptPasswordHasher]]:
    """Hashers a test builds with its own settings, closed afterwards."""
    made: list[BcryptPasswordHasher] = []
    yield made
    for hasher in made:
        hasher.close()


async def test_bcrypt_hash_of_lower_cost_needs_rehash(
    bcrypt_hashers: list[BcryptPasswordHasher],
) -> None:
    cheap, dear = BcryptPasswordHasher(rounds=4), BcryptPasswordHasher(rounds=5)
    bcrypt_hashers += [cheap, dear]

    cheap_hash = await cheap.hash(CORRECT)
    dear_hash = await dear.hash(CORRECT)

    assert dear.needs_rehash(cheap_hash) is True
    assert cheap.needs_rehash(cheap_hash) is False
    assert cheap.needs_rehash(dear_hash) is False
    assert await dear.verify(CORRECT, cheap_hash) is True


async def test_bcrypt_verifies_a_plain_legacy_bcrypt_hash(
    bcrypt_hashers: list[BcryptPasswordHasher],
) -> None:
    hasher = BcryptPasswordHasher(rounds=4)
    bcrypt_hashers.append(hasher)
    legacy = bcrypt.hashpw(CORRECT.value.encode(), bcrypt.gensalt(rounds=4)).decode("ascii")
    assert legacy.startswith("$2b$")

    assert await hasher.verify(CORRECT, legacy) is True
    assert await hasher.verify(WRONG, legacy) is False
    assert await hasher.verify(Password("x" * 100), legacy) is False
    assert hasher.needs_rehash(legacy) is True


async def test_bcrypt_hashes_off_the_event_loop(
    bcrypt_hashers: list[BcryptPasswordHasher],
) -> None:
    hasher = BcryptPasswordHasher(rounds=10)  # tens of milliseconds per hash
    bcrypt_hashers.append(hasher)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        password_hash = await hasher.hash(CORRECT)
        assert await hasher.verify(CORRECT, password_hash)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker

    # Had hashing blocked the loop, the ticker could not have run in between.
    assert ticks >= 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
async def test_bcrypt_hashes_only_on_cycles_nothing_else_wants(
    bcrypt_hashers: list[BcryptPasswordHasher],
) -> None:
    # A login storm must not take the cores from the event loop's requests:
    # the hashing threads are SCHED_IDLE (and nice 19).
    hasher = BcryptPasswordHasher(rounds=4)
    bcrypt_hashers.append(hasher)
    seen: list[tuple[int, int]] = []
    real_hash_now = hasher.hash_now

    def noting_priority(password: Password) -> str:
        native_id = threading.get_native_id()
        seen.append((os.sched_getscheduler(native_id), os.getpriority(os.PRIO_PROCESS, native_id)))
        return real_hash_now(password)

    hasher.hash_now = noting_priority  # type: ignore[method-assign]
    await asyncio.gather(*(hasher.hash(CORRECT) for _ in range(4)))

    assert seen == [(os.SCHED_IDLE, 19)] * 4
    # The event loop's own thread keeps the process's policy and priority.
    here = threading.get_native_id()
    assert os.sched_getscheduler(here) == os.SCHED_OTHER
    assert os.getpriority(os.PRIO_PROCESS, here) < 19
