"""The data set: users who share one real bcrypt hash, and a year of their metrics by COPY."""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta

import psycopg
from attrs import frozen
from common import METRIC_TYPES

from engage_adapters.bcrypt_hasher import BcryptPasswordHasher
from engage_core.model import Password

from . import progress

PASSWORD = "bench-password-of-every-user"
BCRYPT_ROUNDS = 12
HISTORY = timedelta(days=365)
_METRIC_TYPE_WEIGHTS = (40, 20, 10, 10, 8, 6, 4, 2)
_COPY_CHUNK = 250_000  # rows per COPY and commit: the rollup trigger runs once per chunk


def email_of(n: int) -> str:
    """User n's address (1-based); bench/backfill.py's CSV uses the same."""
    return f"bench-{n}@example.com"


@frozen(kw_only=True)
class LoadedData:
    """What was loaded, and how long each step took."""

    users: int
    metrics: int
    hash_seconds: float
    users_seconds: float
    copy_seconds: float
    vacuum_seconds: float


def load_data(url: str, *, users: int, metrics: int, now: datetime, seed: int) -> LoadedData:
    """``users`` users with one password, ``metrics`` metrics over the year before ``now``."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    began = time.perf_counter()
    password_hash = BcryptPasswordHasher(BCRYPT_ROUNDS).hash_now(Password(PASSWORD))
    hash_seconds = time.perf_counter() - began
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(users)]
    with psycopg.connect(url) as conn:
        began = time.perf_counter()
        _insert_users(conn, ids, password_hash)
        users_seconds = time.perf_counter() - began
        began = time.perf_counter()
        _copy_metrics(conn, rng, ids, metrics=metrics, now=now)
        copy_seconds = time.perf_counter() - began
    vacuum_seconds = _vacuum(url)
    return LoadedData(
        users=users,
        metrics=metrics,
        hash_seconds=hash_seconds,
        users_seconds=users_seconds,
        copy_seconds=copy_seconds,
        vacuum_seconds=vacuum_seconds,
    )


def _insert_users(conn: psycopg.Connection, ids: list[str], password_hash: str) -> None:
    """User n (1-based) gets ``ids[n - 1]`` and ``email_of(n)``."""
    conn.execute(
        "INSERT INTO users (id, email, email_key, password_hash)"
        " SELECT u, format('bench-%%s@example.com', n), format('bench-%%s@example.com', n), %s"
        "   FROM unnest(%s::uuid[]) WITH ORDINALITY AS t(u, n)",
        [password_hash, ids],
    )
    conn.commit()


def _copy_metrics(
    conn: psycopg.Connection, rng: random.Random, ids: list[str], *, metrics: int, now: datetime
) -> None:
    """Oldest first, evenly over the year, each user's rows spread over all of it."""
    per_user, extra = divmod(metrics, len(ids))
    owners = [u for i, u in enumerate(ids) for _ in range(per_user + (i < extra))]
    rng.shuffle(owners)
    kinds = rng.choices(METRIC_TYPES, _METRIC_TYPE_WEIGHTS, k=metrics)
    values = [f"{rng.randrange(100_000) / 100:g}" for _ in range(4096)]
    start = now - HISTORY
    step = HISTORY / metrics
    for first in range(0, metrics, _COPY_CHUNK):
        lines = []
        for index in range(first, min(first + _COPY_CHUNK, metrics)):
            moment = start + step * (index + rng.random())
            lines.append(f"{owners[index]}\t{kinds[index]}\t{values[index & 4095]}\t{moment}\n")
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY engagement_metrics (user_id, metric_type, metric_value, recorded_at)"
                " FROM STDIN"
            ) as copy,
        ):
            copy.write("".join(lines))
        conn.commit()
        progress(f"  loaded {min(first + _COPY_CHUNK, metrics):>9,} / {metrics:,} metrics")


def _vacuum(url: str) -> float:
    """``VACUUM (ANALYZE)`` of the loaded tables: its seconds."""
    with psycopg.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) users, engagement_metrics, metric_rollups")
        return time.perf_counter() - began
