"""Signing up: AuthService.sign_up."""

from __future__ import annotations

from uuid import UUID

import pytest

from engage_core import Conflict, Email, Password, ValidationFailed

TOO_LONG_EMAIL = "c" * 64 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 58 + ".com"
assert len(TOO_LONG_EMAIL) == 255


async def test_sign_up_returns_the_new_user(auth, clock):
    user = await auth.sign_up(email="carol@example.com", password="carol-password")

    assert isinstance(user.id, UUID)
    assert user.email == Email("carol@example.com")
    assert str(user.email) == "carol@example.com"
    assert user.created_at == clock.now()


async def test_sign_up_stores_the_user_so_it_can_be_found_by_email(auth, users):
    user = await auth.sign_up(email="carol@example.com", password="carol-password")

    stored = await users.get_by_email("carol@example.com")
    assert stored is not None
    assert stored.id == user.id


async def test_sign_up_lower_cases_the_email_domain_only(auth):
    user = await auth.sign_up(email="Carol.Smith@Example.COM", password="carol-password")

    assert user.email.value == "Carol.Smith@example.com"


async def test_sign_up_gives_each_user_its_own_id(auth):
    carol = await auth.sign_up(email="carol@example.com", password="carol-password")
    dave = await auth.sign_up(email="dave@example.com", password="dave-password")

    assert carol.id != dave.id


async def test_sign_up_with_an_email_taken_in_another_letter_case_conflicts(auth, alice, users):
    with pytest.raises(Conflict):
        await auth.sign_up(email="ALICE@EXAMPLE.COM", password="another-password")

    assert await users.list() == [alice.user]


async def test_sign_up_reports_a_bad_email_and_a_short_password_together(auth, users):
    with pytest.raises(ValidationFailed) as caught:
        await auth.sign_up(email="not-an-email", password="short")

    assert {e.field for e in caught.value.errors} == {"email", "password"}
    assert await users.list() == []


@pytest.mark.parametrize(
    ("email", "password", "field"),
    [
        ("carol@example.com", "1234567", "password"),
        ("carol@example.com", "x" * 257, "password"),
        ("carol@example.com", 12345678, "password"),
        ("carol@example.com", None, "password"),
        ("carol@", "carol-password", "email"),
        ("carol example.com", "carol-password", "email"),
        (TOO_LONG_EMAIL, "carol-password", "email"),
        (None, "carol-password", "email"),
    ],
)
async def test_sign_up_refuses_invalid_credentials(auth, email, password, field):
    with pytest.raises(ValidationFailed) as caught:
        await auth.sign_up(email=email, password=password)

    assert [e.field for e in caught.value.errors] == [field]


@pytest.mark.parametrize("password", ["12345678", "x" * 256, "pässwörd", "🔑🔑🔑🔑🔑🔑🔑🔑"])
async def test_sign_up_accepts_passwords_of_8_to_256_characters(auth, password):
    user = await auth.sign_up(email="carol@example.com", password=password)

    assert user.id is not None


async def test_sign_up_stores_a_hash_never_the_password(auth, users, hasher):
    user = await auth.sign_up(email="carol@example.com", password="carol-password")

    stored = await users.get(user.id)
    assert stored is not None
    assert stored.password_hash != "carol-password"
    assert "carol-password" not in stored.password_hash
    assert await hasher.verify(Password("carol-password"), stored.password_hash)
