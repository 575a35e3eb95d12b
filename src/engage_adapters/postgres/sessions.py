"""Sessions (refresh-token lineages) in PostgreSQL. ``token`` holds a hash only.

Every operation is one statement, so outside a unit of work each runs in
autocommit. The liveness check behind every authenticated request
(``run_checked``) is ``engage_session_check`` (migration 0007), sent in one
pipeline with the request's own first statement: one round trip for both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.transaction import SessionGate, connection
from engage_core.model import Client, DeviceSession, Session
from engage_core.ports import SessionRefused

T = TypeVar("T")

_COLUMNS = (
    "id, user_id, family_id, token, created_at, expires_at, ended_at, end_reason,"
    " user_agent, ip, last_seen_at"
)


def _session(row: tuple[Any, ...]) -> Session:
    return Session(
        id=row[0],
        user_id=row[1],
        family_id=row[2],
        token_hash=row[3],
        created_at=row[4],
        expires_at=row[5],
        ended_at=row[6],
        end_reason=row[7],
        client=Client(ip=row[9], user_agent=row[8]),
        last_seen_at=row[10],
    )


def _values(session: Session) -> list[Any]:
    return [
        session.id,
        session.user_id,
        session.family_id,
        session.token_hash,
        session.created_at,
        session.expires_at,
        session.ended_at,
        session.end_reason,
        session.client.user_agent,
        session.client.ip,
        session.last_seen_at,
    ]


_PLACEHOLDERS = ", ".join(["%s"] * 11)
_INSERT = f"INSERT INTO sessions ({_COLUMNS}) VALUES ({_PLACEHOLDERS})"
# The session when it is the user's and live, else an error with one of these SQLSTATEs.
_CHECK = f"SELECT {_COLUMNS} FROM engage_session_check(%s, %s, %s)"
NO_SUCH_SESSION = "EGS01"
SESSION_ENDED = "EGS02"
_REFUSALS = frozenset({NO_SUCH_SESSION, SESSION_ENDED})


class PostgresSessionRepository:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def add(self, session: Session) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(_INSERT, _values(session))

    async def get(self, session_id: UUID) -> Session | None:
        async with connection(self._pool) as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM sessions WHERE id = %s", [session_id])
            row = await cur.fetchone()
        return _session(row) if row else None

    async def run_checked(
        self,
        session_id: UUID,
        user_id: UUID,
        at: datetime,
        work: Callable[[], Awaitable[T]],
    ) -> tuple[Session, T] | SessionRefused:
        gate = SessionGate(self._pool, _CHECK, (session_id, user_id, at), _REFUSALS)
        checked = await gate.run(work)
        if isinstance(checked, str):
            return SessionRefused(ended=checked == SESSION_ENDED)
        row, result = checked
        return _session(row), result

    async def find_by_token_hash(self, token_hash: str) -> Session | None:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM sessions WHERE token = %s", [token_hash]
            )
            row = await cur.fetchone()
        return _session(row) if row else None

    async def rotate(self, old_id: UUID, new: Session, at: datetime) -> bool:
        # One statement: the old session ends and the new one starts together,
        # and only if the old one was still live (a concurrent rotation loses).
        # The user's row is held FOR SHARE first: a password change or reset
        # (which updates it, then ends every session) either waits for this
        # rotation and then ends the new session too, or commits first and the
        # old session is found ended here.
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"""
                WITH spent AS (
                    UPDATE sessions SET ended_at = %s, end_reason = 'rotated'
                     WHERE id = %s AND ended_at IS NULL AND expires_at > %s
                       AND EXISTS (SELECT FROM users u WHERE u.id = sessions.user_id FOR SHARE)
                    RETURNING id
                )
                INSERT INTO sessions ({_COLUMNS})
                SELECT {_PLACEHOLDERS} WHERE EXISTS (SELECT FROM spent)
                """,
                [at, old_id, at, *_values(new)],
            )
            return cur.rowcount == 1

    async def end_family(self, family_id: UUID, at: datetime, reason: str) -> list[UUID]:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "UPDATE sessions SET ended_at = %s, end_reason = %s"
                " WHERE family_id = %s AND ended_at IS NULL AND expires_at > %s RETURNING id",
                [at, reason, family_id, at],
            )
            return [row[0] for row in await cur.fetchall()]

    async def end_all_for_user(
        self, user_id: UUID, at: datetime, reason: str, *, keep_family: UUID | None = None
    ) -> list[UUID]:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "UPDATE sessions SET ended_at = %s, end_reason = %s"
                " WHERE user_id = %s AND ended_at IS NULL AND expires_at > %s"
                " AND family_id IS DISTINCT FROM %s RETURNING id",
                [at, reason, user_id, at, keep_family],
            )
            return [row[0] for row in await cur.fetchall()]

    async def touch(self, session_id: UUID, at: datetime, *, unless_after: datetime) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE sessions SET last_seen_at = %s WHERE id = %s"
                " AND (last_seen_at IS NULL OR last_seen_at <= %s)",
                [at, session_id, unless_after],
            )

    async def has_sessions(self, user_id: UUID) -> bool:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "SELECT EXISTS (SELECT FROM sessions WHERE user_id = %s)", [user_id]
            )
            row = await cur.fetchone()
        return bool(row and row[0])

    async def has_sessions_from(self, user_id: UUID, user_agent: str | None) -> bool:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "SELECT EXISTS (SELECT FROM sessions WHERE user_id = %s"
                " AND user_agent IS NOT DISTINCT FROM %s::text)",
                [user_id, user_agent],
            )
            row = await cur.fetchone()
        return bool(row and row[0])

    async def live_devices(self, user_id: UUID, at: datetime) -> list[DeviceSession]:
        # The family's first step is when the device signed in; its live step, the rest.
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                """
                SELECT s.family_id,
                       (SELECT min(f.created_at) FROM sessions f WHERE f.family_id = s.family_id),
                       coalesce(s.last_seen_at, s.created_at), s.user_agent, s.ip
                  FROM sessions s
                 WHERE s.user_id = %s AND s.ended_at IS NULL AND s.expires_at > %s
                 ORDER BY 2 DESC, 1 DESC
                """,
                [user_id, at],
            )
            rows = await cur.fetchall()
        return [
            DeviceSession(
                id=row[0],
                signed_in_at=row[1],
                last_seen_at=row[2],
                client=Client(ip=row[4], user_agent=row[3]),
            )
            for row in rows
        ]
