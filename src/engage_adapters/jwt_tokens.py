"""Access tokens as JWTs signed with a shared secret (PyJWT)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from uuid import UUID

import jwt

from engage_core.errors import Unauthorized
from engage_core.ports import AccessClaims

# RFC 7518 §3.2: an HMAC key at least as long as the hash output.
KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
ALGORITHMS = tuple(KEY_BYTES)
REQUIRED_CLAIMS = ["sub", "sid", "iat", "exp", "iss", "aud"]
MIN_SECRET_BYTES = 32
MAX_TOKEN_LENGTH = 4096
# Verified tokens remembered per process (a few MiB at most), oldest dropped first.
VERIFIED_TOKENS_KEPT = 10_000


class JwtTokenIssuer:
    """HS256 by default. Decoding accepts exactly the configured algorithm and
    requires every claim in ``REQUIRED_CLAIMS``."""

    def __init__(
        self,
        secret: bytes,
        *,
        algorithm: str = "HS256",
        issuer: str = "engage-suite",
        audience: str = "engage-suite",
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"JWT algorithm must be one of {', '.join(ALGORITHMS)}")
        if len(secret) < KEY_BYTES[algorithm]:
            raise ValueError(
                f"a JWT secret for {algorithm} must be at least {KEY_BYTES[algorithm]} bytes"
            )
        self._secret = secret
        self._algorithm = algorithm
        self._issuer = issuer
        self._audience = audience
        # token -> (its claims, its exp): tokens this process has verified in full.
        self._verified: dict[str, tuple[AccessClaims, int]] = {}

    async def issue(self, claims: AccessClaims) -> str:
        return jwt.encode(
            {
                "sub": str(claims.user_id),
                "sid": str(claims.session_id),
                "iat": int(claims.issued_at.timestamp()),
                "exp": int(claims.expires_at.timestamp()),
                "iss": self._issuer,
                "aud": self._audience,
            },
            self._secret,
            algorithm=self._algorithm,
        )

    async def verify(self, token: str) -> AccessClaims:
        """The token's claims, once its signature, algorithm, issuer, audience,
        required claims and expiry all check out.

        A client sends the same token with every request until it expires. The
        checks on the exact same string give the same answer every time, except
        expiry, so a token seen before skips to the expiry check (PyJWT's rule:
        expired once ``exp <= now``); any other string is verified in full.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("authentication required", reason="token too long")
        seen = self._verified.get(token)
        if seen is not None:
            claims, exp = seen
            if exp > time.time():
                return claims
            del self._verified[token]  # expired: verified in full below, to fail as such
        claims, exp = self._verify_in_full(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = (claims, exp)
        return claims

    def _verify_in_full(self, token: str) -> tuple[AccessClaims, int]:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS},
            )
            claims = AccessClaims(
                user_id=UUID(payload["sub"]),
                session_id=UUID(str(payload["sid"])),
                issued_at=datetime.fromtimestamp(payload["iat"], UTC),
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            )
            return claims, int(payload["exp"])
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            raise Unauthorized("authentication required", reason=f"bad token: {exc}") from None
