"""The backfill file, its raw ``\\copy`` into a bare table (the ceiling), and ``engage
metrics backfill`` of it timed as a whole process."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from common import METRIC_TYPES

from engage_adapters.embedded_pg import embedded_bin_dir

from .data import email_of

# bench/backfill.py times the backfill on its own; its steps are reused here when it exists.
backfill_bench: Any = None
with suppress(ImportError):
    import backfill as backfill_bench

RAW_TABLE = "bench_raw_copy"
_BACKFILL_SPAN = timedelta(days=730)


def write_backfill_csv(path: Path, *, rows: int, users: int, end: datetime, seed: int) -> None:
    """``email,metric_type,metric_value,recorded_at``, oldest first, ending at ``end``."""
    if backfill_bench is not None:
        backfill_bench.write_csv(path, rows=rows, users=users, end=end, seed=seed)
        return
    rng = random.Random(seed)  # noqa: S311
    emails = [email_of(n) for n in range(1, users + 1)]
    values = [f"{rng.randrange(100_000) / 100:g}" for _ in range(4096)]
    start, step = end - _BACKFILL_SPAN, _BACKFILL_SPAN / rows
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,metric_type,metric_value,recorded_at\n")
        lines: list[str] = []
        for index in range(rows):
            moment = (start + step * (index + rng.random())).isoformat()
            lines.append(
                f"{rng.choice(emails)},{rng.choice(METRIC_TYPES)},{values[index & 4095]},{moment}\n"
            )
            if len(lines) >= 50_000:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))


def raw_copy(url: str, csv: Path, scratch: Path) -> float:
    """``\\copy`` of the CSV into a bare table (no index, trigger or constraint): rows/s."""
    if backfill_bench is not None:
        step = backfill_bench.raw_copy(url, csv, scratch)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        return float(step.rows_per_second)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        conn.execute(
            f"CREATE TABLE {RAW_TABLE} (email varchar(254), metric_type varchar(100),"
            " metric_value numeric, recorded_at timestamptz)"
        )
        conn.execute("CHECKPOINT")
    began = time.perf_counter()
    output = _psql(url, f"\\copy {RAW_TABLE} FROM '{csv}' WITH (FORMAT csv, HEADER true)")
    seconds = time.perf_counter() - began
    if not output.startswith("COPY "):
        raise SystemExit(f"bench: raw \\copy said {output!r}")
    rows = int(output.split()[1])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {RAW_TABLE}")
    return rows / seconds


def run_backfill(url: str, csv: Path, env: dict[str, str], rows: int, scratch: Path) -> float:
    """``engage metrics backfill`` of the CSV as a whole process: rows/s."""
    if backfill_bench is not None:
        backfill_bench.warm_up(url, scratch)
        step = backfill_bench.backfill(
            url, csv, scratch, "engage metrics backfill", expect_inserted=rows
        )
        return float(step.rows_per_second)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    began = time.perf_counter()
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "engage_cli", "metrics", "backfill", str(csv)],
        env={**env, "ENGAGE_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0 or f"loaded {rows} metrics" not in done.stdout:
        raise SystemExit(f"bench: backfill failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return rows / seconds


_BY_USER = "bench_backfill_by_user"
# The CSV's rows with user ids, in the backfill's insert order (user, type, time).
_BY_USER_ID = (
    f"SELECT u.id, r.metric_type, r.metric_value, r.recorded_at FROM {_BY_USER} r"  # noqa: S608
    " JOIN users u ON u.email_key = r.email ORDER BY 1, 2, 4"
)


def settle_tables(url: str) -> None:
    """``VACUUM (ANALYZE)`` of the metrics tables, as the writes before left them."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) engagement_metrics, metric_rollups")


def copy_into_table(url: str, csv: Path, scratch: Path) -> float:
    """``\\copy`` of the CSV's rows into ``engagement_metrics`` itself, rollup trigger
    and all, with each email's user id and sorted by user, type and time as the
    backfill inserts them: rows/s. Rolled back (and vacuumed away), so the backfill
    after it sees the same table."""
    by_id = scratch / "backfill-by-user-id.csv"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {_BY_USER}")
        conn.execute(
            f"CREATE TABLE {_BY_USER} (email text, metric_type text,"
            " metric_value numeric, recorded_at timestamptz)"
        )
    _psql(url, f"\\copy {_BY_USER} FROM '{csv}' WITH (FORMAT csv, HEADER true)")
    _psql(
        url,
        f"\\copy ({_BY_USER_ID}) TO '{by_id}' WITH (FORMAT csv)",
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {_BY_USER}")
        conn.execute("CHECKPOINT")
    columns = "(user_id, metric_type, metric_value, recorded_at)"
    began = time.perf_counter()
    output = _psql(
        url,
        "BEGIN",
        f"\\copy engagement_metrics {columns} FROM '{by_id}' WITH (FORMAT csv)",
        "ROLLBACK",
    )
    seconds = time.perf_counter() - began
    by_id.unlink()
    settle_tables(url)
    copied = [line for line in output.splitlines() if line.startswith("COPY ")]
    if not copied:
        raise SystemExit(f"bench: \\copy into engagement_metrics said {output!r}")
    return int(copied[0].split()[1]) / seconds


def _psql(url: str, *commands: str) -> str:
    """Run ``commands`` in one psql session (UTC, stop at the first error): its output."""
    argv = [str(embedded_bin_dir() / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", url]
    for command in commands:
        argv += ["-c", command]
    done = subprocess.run(  # noqa: S603 - the embedded psql, our own commands
        argv,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PGOPTIONS": "-c TimeZone=UTC"},
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: psql failed: {done.stdout}{done.stderr}")
    return done.stdout
