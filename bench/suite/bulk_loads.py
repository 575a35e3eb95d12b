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
    psql = embedded_bin_dir() / "psql"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        conn.execute(
            f"CREATE TABLE {RAW_TABLE} (email varchar(254), metric_type varchar(100),"
            " metric_value numeric, recorded_at timestamptz)"
        )
        conn.execute("CHECKPOINT")
    command = f"\\copy {RAW_TABLE} FROM '{csv}' WITH (FORMAT csv, HEADER true)"
    began = time.perf_counter()
    done = subprocess.run(  # noqa: S603
        [str(psql), "-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", command],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PGOPTIONS": "-c TimeZone=UTC"},
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0 or not done.stdout.startswith("COPY "):
        raise SystemExit(f"bench: raw \\copy failed: {done.stdout}{done.stderr}")
    rows = int(done.stdout.split()[1])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {RAW_TABLE}")
    return rows / seconds


def run_backfill(url: str, csv: Path, env: dict[str, str], rows: int, scratch: Path) -> float:
    """``engage metrics backfill`` of the CSV as a whole process: rows/s."""
    if backfill_bench is not None:
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
