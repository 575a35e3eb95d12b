"""The mail outbox in PostgreSQL: messages queued in the transaction of the change
that caused them, claimed by senders with FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.transaction import connection
from engage_core.model import Email
from engage_core.ports import MailMessage, MailStatus, QueuedMail

_COLUMNS = (
    "id, recipient, subject, text_body, html_body, link, status, attempts, created_at,"
    " next_attempt_at, sent_at, last_error, receipt"
)


def _queued(row: tuple[Any, ...]) -> QueuedMail:
    return QueuedMail(
        message=MailMessage(
            id=row[0], to=Email(row[1]), subject=row[2], text=row[3], html=row[4], link=row[5]
        ),
        status=MailStatus(row[6]),
        attempts=row[7],
        created_at=row[8],
        next_attempt_at=row[9],
        sent_at=row[10],
        last_error=row[11],
        receipt=row[12],
    )


class PostgresMailQueue:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def enqueue(self, message: MailMessage, at: datetime) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "INSERT INTO mail_outbox (id, recipient, subject, text_body, html_body, link,"
                " created_at, next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    message.id,
                    message.to.value,
                    message.subject,
                    message.text,
                    message.html,
                    message.link,
                    at,
                    at,
                ],
            )

    async def claim(self, at: datetime, *, limit: int, lease: timedelta) -> Sequence[QueuedMail]:
        # One statement: a row locked by another claimer is skipped, and once that
        # claim commits the row is due only after the lease, so no two get it.
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"""
                UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = %s
                 WHERE id IN (
                     SELECT id FROM mail_outbox
                      WHERE status = 'queued' AND next_attempt_at <= %s
                      ORDER BY next_attempt_at, created_at
                      LIMIT %s
                        FOR UPDATE SKIP LOCKED)
                RETURNING {_COLUMNS}
                """,
                [at + lease, at, limit],
            )
            rows = await cur.fetchall()
        return sorted((_queued(r) for r in rows), key=lambda q: q.created_at)

    async def mark_sent(self, message_id: UUID, at: datetime, receipt: str) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE mail_outbox SET status = 'sent', sent_at = %s, receipt = %s,"
                " last_error = NULL, text_body = '', html_body = '', link = NULL WHERE id = %s",
                [at, receipt, message_id],
            )

    async def mark_failed(
        self, message_id: UUID, at: datetime, error: str, *, retry_at: datetime | None
    ) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE mail_outbox SET last_error = %s,"
                " status = CASE WHEN %s::timestamptz IS NULL THEN 'failed' ELSE 'queued' END,"
                " next_attempt_at = coalesce(%s, %s) WHERE id = %s",
                [error, retry_at, retry_at, at, message_id],
            )

    async def recent(self, *, limit: int) -> Sequence[QueuedMail]:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM mail_outbox ORDER BY created_at DESC, id LIMIT %s",
                [limit],
            )
            return [_queued(r) for r in await cur.fetchall()]

    async def drop_unsent(self, recipient: str) -> int:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "DELETE FROM mail_outbox WHERE recipient = %s AND status <> 'sent'", [recipient]
            )
            return cur.rowcount

    async def requeue_failed(self, at: datetime) -> int:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "UPDATE mail_outbox SET status = 'queued', attempts = 0, next_attempt_at = %s"
                " WHERE status = 'failed'",
                [at],
            )
            return cur.rowcount
