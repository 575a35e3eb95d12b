"""TOTP set-ups, recovery codes and login challenges in PostgreSQL.

Spending a step, a recovery code or a challenge attempt is one conditional
UPDATE (or DELETE) each: of two requests racing with the same code, exactly
one wins. The TOTP secret arrives sealed (``SecretBox``) and is stored so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.transaction import connection
from engage_core.model import Client, LoginPurpose, MfaChallenge, TotpFactor

_CHALLENGE_COLUMNS = (
    "token_hash, user_id, purpose, user_agent, ip, created_at, expires_at, attempts"
)


def _challenge(row: tuple[Any, ...]) -> MfaChallenge:
    return MfaChallenge(
        token_hash=row[0],
        user_id=row[1],
        purpose=LoginPurpose(row[2]),
        client=Client(ip=row[4], user_agent=row[3]),
        created_at=row[5],
        expires_at=row[6],
        attempts=row[7],
    )


class PostgresSecondFactorRepository:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def get(self, user_id: UUID) -> TotpFactor | None:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "SELECT secret, created_at, enabled_at, last_step FROM user_totp"
                " WHERE user_id = %s",
                [user_id],
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return TotpFactor(
            user_id=user_id,
            sealed_secret=row[0],
            created_at=row[1],
            enabled_at=row[2],
            last_step=row[3],
        )

    async def begin(self, factor: TotpFactor) -> bool:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "INSERT INTO user_totp AS t (user_id, secret, created_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (user_id) DO UPDATE"
                " SET secret = excluded.secret, created_at = excluded.created_at,"
                " last_step = NULL WHERE t.enabled_at IS NULL",
                [factor.user_id, factor.sealed_secret, factor.created_at],
            )
            return cur.rowcount == 1

    async def enable(
        self, user_id: UUID, at: datetime, *, step: int, recovery_code_hashes: Sequence[str]
    ) -> bool:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                """
                WITH enabled AS (
                    UPDATE user_totp SET enabled_at = %s, last_step = %s
                     WHERE user_id = %s AND enabled_at IS NULL
                    RETURNING user_id
                ),
                cleared AS (
                    DELETE FROM recovery_codes WHERE user_id IN (SELECT user_id FROM enabled)
                )
                INSERT INTO recovery_codes (user_id, code_hash)
                SELECT enabled.user_id, code FROM enabled, unnest(%s::text[]) AS code
                """,
                [at, step, user_id, list(recovery_code_hashes)],
            )
            return cur.rowcount > 0

    async def remove(self, user_id: UUID) -> bool:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "WITH codes AS (DELETE FROM recovery_codes WHERE user_id = %s)"
                " DELETE FROM user_totp WHERE user_id = %s",
                [user_id, user_id],
            )
            return cur.rowcount == 1

    async def use_step(self, user_id: UUID, step: int) -> bool:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "UPDATE user_totp SET last_step = %s"
                " WHERE user_id = %s AND (last_step IS NULL OR last_step < %s)",
                [step, user_id, step],
            )
            return cur.rowcount == 1

    async def replace_recovery_codes(self, user_id: UUID, code_hashes: Sequence[str]) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "WITH cleared AS (DELETE FROM recovery_codes WHERE user_id = %s)"
                " INSERT INTO recovery_codes (user_id, code_hash)"
                " SELECT %s, code FROM unnest(%s::text[]) AS code",
                [user_id, user_id, list(code_hashes)],
            )

    async def use_recovery_code(self, user_id: UUID, code_hash: str, at: datetime) -> bool:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "UPDATE recovery_codes SET used_at = %s"
                " WHERE user_id = %s AND code_hash = %s AND used_at IS NULL",
                [at, user_id, code_hash],
            )
            return cur.rowcount == 1

    async def unused_recovery_codes(self, user_id: UUID) -> int:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM recovery_codes WHERE user_id = %s AND used_at IS NULL",
                [user_id],
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def add_challenge(self, challenge: MfaChallenge) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                f"INSERT INTO mfa_challenges ({_CHALLENGE_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    challenge.token_hash,
                    challenge.user_id,
                    challenge.purpose.value,
                    challenge.client.user_agent,
                    challenge.client.ip,
                    challenge.created_at,
                    challenge.expires_at,
                    challenge.attempts,
                ],
            )

    async def attempt_challenge(
        self, token_hash: str, at: datetime, *, max_attempts: int
    ) -> MfaChallenge | None:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"UPDATE mfa_challenges SET attempts = attempts + 1"
                f" WHERE token_hash = %s AND expires_at > %s AND attempts < %s"
                f" RETURNING {_CHALLENGE_COLUMNS}",
                [token_hash, at, max_attempts],
            )
            row = await cur.fetchone()
        if row is None:
            return None
        before = _challenge(row)
        return attrs.evolve(before, attempts=before.attempts - 1)

    async def end_challenge(self, token_hash: str) -> bool:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "DELETE FROM mfa_challenges WHERE token_hash = %s", [token_hash]
            )
            return cur.rowcount == 1

    async def end_challenges_of(self, user_id: UUID) -> int:
        async with connection(self._pool) as conn:
            cur = await conn.execute("DELETE FROM mfa_challenges WHERE user_id = %s", [user_id])
            return cur.rowcount

    async def purge_challenges(self, before: datetime) -> int:
        async with connection(self._pool) as conn:
            cur = await conn.execute("DELETE FROM mfa_challenges WHERE expires_at < %s", [before])
            return cur.rowcount
