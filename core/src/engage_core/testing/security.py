"""Fast stand-ins for the password hasher, token issuer, secret box and one-time
passwords: deterministic and insecure, for tests only."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from engage_core.errors import Unauthorized
from engage_core.model import Password
from engage_core.ports import AccessClaims, Clock

__all__ = ["FakeOneTimePasswords", "FakePasswordHasher", "FakeSecretBox", "FakeTokenIssuer"]


class FakePasswordHasher:
    """Fast and insecure: a salted SHA-256. For tests only, never for real passwords.

    Hashes are ``fake$<rounds>$<salt>$<digest>``; ``rounds`` only marks the
    settings a hash was made with, so rehash-on-login can be tested.
    """

    def __init__(self, rounds: int = 1) -> None:
        self.rounds = rounds
        self.hash_calls = 0
        self.verify_calls = 0

    async def hash(self, password: Password) -> str:
        self.hash_calls += 1
        salt = secrets.token_hex(8)
        return f"fake${self.rounds}${salt}${self._digest(salt, password)}"

    async def verify(self, password: Password, password_hash: str) -> bool:
        self.verify_calls += 1
        parts = password_hash.split("$")
        if len(parts) != 4 or parts[0] != "fake":
            return False
        return hmac.compare_digest(parts[3].encode(), self._digest(parts[2], password).encode())

    def needs_rehash(self, password_hash: str) -> bool:
        parts = password_hash.split("$")
        return len(parts) != 4 or parts[1] != str(self.rounds)

    @staticmethod
    def _digest(salt: str, password: Password) -> str:
        return hashlib.sha256(f"{salt}:{password.value}".encode()).hexdigest()


class FakeTokenIssuer:
    """Opaque random tokens mapped to their claims in memory; expiry from a clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._claims: dict[str, AccessClaims] = {}

    async def issue(self, claims: AccessClaims) -> str:
        token = f"fake.{secrets.token_urlsafe(24)}"
        self._claims[token] = claims
        return token

    async def verify(self, token: str) -> AccessClaims:
        claims = self._claims.get(token)
        if claims is None:
            raise Unauthorized("authentication required", reason="unknown token")
        if self._clock.now() >= claims.expires_at:
            raise Unauthorized("authentication required", reason="token expired")
        return claims


class FakeSecretBox:
    """Reversible and keyless: for tests only. Sealed text never equals the plaintext."""

    def seal(self, plaintext: str) -> str:
        return "sealed:" + plaintext.encode("utf-8").hex()

    def open(self, sealed: str) -> str:
        if not sealed.startswith("sealed:"):
            raise ValueError("this box cannot open that: it did not seal it")
        return bytes.fromhex(sealed.removeprefix("sealed:")).decode("utf-8")


class FakeOneTimePasswords:
    """Six-digit codes from a hash of secret and step: not RFC 6238, but as strict
    (one code per step, a different one for each secret)."""

    def new_secret(self) -> str:
        return secrets.token_hex(10).upper()

    def code(self, secret: str, step: int) -> str:
        digest = hashlib.sha256(f"{secret}:{step}".encode()).digest()
        return f"{int.from_bytes(digest[:4], 'big') % 1_000_000:06d}"

    def provisioning_uri(self, secret: str, *, account: str, issuer: str) -> str:
        return f"otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}"

    def qr_svg(self, text: str) -> str:
        return f'<svg xmlns="http://www.w3.org/2000/svg"><desc>{len(text)}</desc></svg>'
