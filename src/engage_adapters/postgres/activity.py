"""The activity log in PostgreSQL: INSERT and, past the retention, DELETE; never UPDATE."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.transaction import connection
from engage_core.model import ActivityEntry, ActivityKind, Client
from engage_core.ports import ActivityQuery

_COLUMNS = "id, user_id, email, kind, at, ip, user_agent"


def _entry(row: tuple[Any, ...]) -> ActivityEntry:
    return ActivityEntry(
        id=row[0],
        user_id=row[1],
        email=row[2],
        kind=ActivityKind(row[3]),
        at=row[4],
        client=Client(ip=row[5], user_agent=row[6]),
    )


class PostgresActivityRepository:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def add(self, entry: ActivityEntry) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "INSERT INTO activity (user_id, email, kind, at, ip, user_agent)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    entry.user_id,
                    entry.email,
                    entry.kind.value,
                    entry.at,
                    entry.client.ip,
                    entry.client.user_agent,
                ],
            )

    async def page(self, query: ActivityQuery) -> Sequence[ActivityEntry]:
        conditions: list[sql.Composable] = []
        params: list[Any] = []
        for column, value in (
            ("user_id", query.user_id),
            ("email", query.email),
            ("kind", query.kind.value if query.kind is not None else None),
        ):
            if value is not None:
                conditions.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if query.since is not None:
            conditions.append(sql.SQL("at >= %s"))
            params.append(query.since)
        if query.after is not None:
            conditions.append(sql.SQL("(at, id) < (%s, %s)"))
            params.extend(query.after)
        where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
        statement = sql.SQL(
            "SELECT {columns} FROM activity WHERE {where} ORDER BY at DESC, id DESC LIMIT %s"
        ).format(columns=sql.SQL(_COLUMNS), where=where)
        async with connection(self._pool) as conn:
            cur = await conn.execute(statement, [*params, query.limit])
            return [_entry(row) for row in await cur.fetchall()]

    async def purge(self, before: datetime) -> int:
        async with connection(self._pool) as conn:
            cur = await conn.execute("DELETE FROM activity WHERE at < %s", [before])
            return cur.rowcount
