"""Access tokens as JWTs signed with a shared secret (PyJWT)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import jwt

from engage_core.errors import Unauthorized
from engage_core.ports import AccessClaims

ALGORITHMS = ("HS256", "HS384", "HS512")
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
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"JWT secret must be at least {MIN_SECRET_BYTES} bytes")
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
