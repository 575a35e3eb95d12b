"""Access tokens as JWTs signed with a shared secret (PyJWT)."""

from __future__ import annotations

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
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("authentication required", reason="token too long")
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS},
            )
            return AccessClaims(
                user_id=UUID(payload["sub"]),
                session_id=UUID(str(payload["sid"])),
                issued_at=datetime.fromtimestamp(payload["iat"], UTC),
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            )
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            raise Unauthorized("authentication required", reason=f"bad token: {exc}") from None
