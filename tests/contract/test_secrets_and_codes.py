"""Contracts of SecretBox (secrets at rest) and OneTimePasswords (TOTP codes)."""

from __future__ import annotations

import pytest

from engage_adapters.secret_box import FernetSecretBox
from engage_adapters.totp import PyotpOneTimePasswords
from engage_core.ports import OneTimePasswords, SecretBox


def test_a_sealed_secret_opens_to_itself_and_hides_it(secret_box: SecretBox) -> None:
    sealed = secret_box.seal("JBSWY3DPEHPK3PXP")

    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert secret_box.open(sealed) == "JBSWY3DPEHPK3PXP"


def test_what_was_not_sealed_by_the_box_does_not_open(secret_box: SecretBox) -> None:
    with pytest.raises(ValueError, match="open"):
        secret_box.open("JBSWY3DPEHPK3PXP")


def test_codes_are_six_digits_one_per_step_and_per_secret(
    one_time_passwords: OneTimePasswords,
) -> None:
    first, second = one_time_passwords.new_secret(), one_time_passwords.new_secret()
    codes = [one_time_passwords.code(first, step) for step in range(1000, 1020)]

    assert first != second
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert one_time_passwords.code(first, 1000) == codes[0]
    assert len(set(codes)) > 15
    assert [one_time_passwords.code(second, s) for s in range(1000, 1020)] != codes


def test_the_uri_and_qr_code_name_the_account(one_time_passwords: OneTimePasswords) -> None:
    secret = one_time_passwords.new_secret()
    uri = one_time_passwords.provisioning_uri(secret, account="ada@example.com", issuer="engage")

    assert uri.startswith("otpauth://totp/")
    assert secret in uri
    assert one_time_passwords.qr_svg(uri).startswith("<svg")


# --- the real adapters only -------------------------------------------------------


def test_pyotp_gives_the_rfc_6238_test_vector() -> None:
    # RFC 6238 appendix B, SHA-1, T = 59 s: 94287082, of which authenticators show 6 digits.
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of "12345678901234567890"
    assert PyotpOneTimePasswords().code(secret, 59 // 30) == "287082"


def test_an_old_key_still_opens_what_it_sealed_and_the_new_one_seals() -> None:
    old_key, new_key = b"the old key, thirty-two bytes long", b"the new key, thirty-two bytes long"
    old = FernetSecretBox([old_key])
    rotated = FernetSecretBox([new_key, old_key])
    sealed_before = old.seal("secret")

    assert rotated.open(sealed_before) == "secret"
    resealed = rotated.reseal(sealed_before)
    with pytest.raises(ValueError, match="open"):
        old.open(resealed)
    assert FernetSecretBox([new_key]).open(resealed) == "secret"
