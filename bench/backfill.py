"""Backfill benchmark: ``engage metrics backfill`` against a raw ``\\copy`` of the same file.

What it measures
----------------
One CSV file of ``--rows`` metrics (``email,metric_type,metric_value,recorded_at``)
for ``--users`` users is loaded, in the same run, in these ways:

* ``raw \\copy``        -- the embedded ``psql -c "\\copy ..."`` into a bare table of
  the file's shape (no index, no constraint, no trigger): the ceiling.
* ``\\copy, shape``     -- context, not a goal: ``\\copy`` of the same rows, with
  the user's id in place of the email and in the backfill's insert order
  (user, type, time), into a table of ``engagement_metrics``' shape: its
  identity primary key, its two indexes and its foreign key to ``users``, no
  trigger. What the table's own upkeep costs before any rollup.
* ``\\copy, table``     -- the same file into ``engagement_metrics`` itself: the
  above plus the rollup trigger. What the schema alone costs, with no staging
  and no de-duplication; the tables are emptied again afterwards. The goal:
  the backfill at ``GOAL_RATIO`` of its rows/s.
* ``\\copy, file order`` -- context: the same, with the rows in the file's own
  order (owners interleaved, oldest first) rather than sorted by user: what
  index and rollup upkeep costs when one user's rows lie far apart, as they do
  for a load that streams the file in chunks.
* ``SQL only``         -- the backfill's own SQL from ``psql``, without its Python:
  ``\\copy`` into the same staging table, then the same ``INSERT ... SELECT``
  (taken from ``engage_adapters.postgres.bulk``), in one transaction: the
  ``\\copy, table`` row plus staging and de-duplication, the floor for the
  command itself. The tables are emptied again afterwards.
* ``backfill``         -- ``engage metrics backfill FILE``, the real command in a
  subprocess: every row validated with the API's rules, COPY into a staging
  table, the unknown-email check, the de-duplicating insert into
  ``engagement_metrics`` (primary key, two indexes, the foreign key to
  ``users``) and the 15-minute rollups, all in one transaction.
* ``backfill again``   -- the same command on the same file: every row is
  already stored, nothing is inserted (the idempotent re-load).
* ``backfill 100k``    -- a tenth-size file of new rows, to show the command's
  peak memory does not grow with the file (memory flat).

Each step is timed wall-clock around the whole process (interpreter start-up
included for ``engage``) and its peak RSS is that process's own ``ru_maxrss``
(``os.wait4``), not the server's. A ``CHECKPOINT`` before each step keeps one
step's dirty pages from being written during the next. Afterwards the script
checks the stored counts: every row once, and the rollups summing to them.

Where it runs
-------------
Without ``--database-url`` it starts its own embedded PostgreSQL in a fresh
temporary directory, applies the migrations, and removes it all at the end
(the CSV files live there too). With ``--database-url`` it applies the
migrations, refuses a database that already holds users, and empties the
tables again at the end.

Usage::

    python bench/backfill.py [--rows 1000000] [--users 1000]
                             [--database-url URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from attrs import asdict, frozen
from common import (
    METRIC_TYPES,
    environment,
    external_database,
    positive,
    stop_embedded,
    table,
)

from engage_adapters.embedded_pg import embedded_bin_dir, start_embedded
from engage_adapters.postgres.bulk import INSERT_STAGED, STAGING
from engage_adapters.postgres.migrate import upgrade

GOAL_RATIO = 0.9  # of the rows/s of a \copy into engagement_metrics itself (issue 17)
SMALL_FRACTION = 10  # the memory-flatness file is a tenth of --rows
HISTORY = timedelta(days=730)
STEP_TIMEOUT = 300  # seconds; a step that takes longer is a failure, not a result
RAW_TABLE = "bench_raw_copy"
SHAPED_TABLE = "bench_shaped_copy"
# The raw copy's rows with user ids for emails, in the backfill's insert order.
_BY_USER_ID = (
    "SELECT u.id, r.metric_type, r.metric_value, r.recorded_at"
    "  FROM bench_raw_copy r JOIN users u ON u.email_key = r.email"
    " ORDER BY u.id, r.metric_type, r.recorded_at"
)


@frozen(kw_only=True)
class Step:
    name: str
    rows: int
    seconds: float
    cpu_seconds: float  # the process's own user + system time
    server_cpu_seconds: float | None  # the embedded server's backends; None if not known
    peak_rss_bytes: int
    output: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


# --- the data -------------------------------------------------------------------


def _email(n: int) -> str:
    return f"bench-{n}@example.com"


def create_users(url: str, users: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO users (id, email, email_key, password_hash)"
            " SELECT gen_random_uuid(), e, e, '!bench: no login'"
            "   FROM generate_series(1, %s) AS n,"
            "        LATERAL (SELECT format('bench-%%s@example.com', n)) AS m(e)",
            [users],
        )


def write_csv(path: Path, *, rows: int, users: int, end: datetime, seed: int) -> int:
    """``rows`` metrics, oldest first, owners interleaved, ending before ``end``."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    emails = [_email(n) for n in range(1, users + 1)]
    values = [f"{rng.randrange(100_000) / 100:.2f}".rstrip("0").rstrip(".") for _ in range(4096)]
    start = end - HISTORY
    step_us = HISTORY / timedelta(microseconds=1) / rows
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,metric_type,metric_value,recorded_at\n")
        batch: list[str] = []
        for index in range(rows):
            moment = start + timedelta(microseconds=int((index + rng.random()) * step_us))
            batch.append(
                f"{rng.choice(emails)},{rng.choice(METRIC_TYPES)},{rng.choice(values)},"
                f"{moment.isoformat().replace('+00:00', 'Z')}\n"
            )
            if len(batch) >= 10_000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
    return path.stat().st_size


# --- the steps ------------------------------------------------------------------


class ServerCpu:
    """CPU time of the embedded server's finished backends, from the postmaster's
    ``cutime + cstime`` (a backend's time is added there when it exits)."""

    pid: int | None = None

    @classmethod
    def watch(cls, pgdata: Path) -> None:
        try:
            cls.pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            cls.pid = None

    @classmethod
    def settled(cls) -> float | None:
        """The total, once backends that just ended have been reaped."""
        if cls.pid is None:
            return None
        last = cls._read()
        for _ in range(40):
            time.sleep(0.025)
            now = cls._read()
            if now == last:
                return now
            last = now
        return last

    @classmethod
    def _read(cls) -> float | None:
        try:
            fields = Path(f"/proc/{cls.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def _run(name: str, rows: int, argv: Sequence[str], env: dict[str, str], scratch: Path) -> Step:
    """Run ``argv`` to completion: its wall time, its own CPU time and peak RSS
    (``wait4``), and the CPU time the server's backends spent meanwhile."""
    log = scratch / "step.log"
    server_before = ServerCpu.settled()
    with log.open("w+", encoding="utf-8") as sink:
        began = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = began + STEP_TIMEOUT
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                proc.wait()
                raise SystemExit(f"bench: {name} took more than {STEP_TIMEOUT} s; stopped it")
            time.sleep(0.005)
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        sink.seek(0)
        output = sink.read().strip()
    if proc.returncode != 0:
        raise SystemExit(f"bench: {name} failed (exit {proc.returncode}):\n{output}")
    server_after = ServerCpu.settled()
    return Step(
        name=name,
        rows=rows,
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        server_cpu_seconds=(
            server_after - server_before
            if server_before is not None and server_after is not None
            else None
        ),
        peak_rss_bytes=usage.ru_maxrss * 1024,  # KiB on Linux
        output=output,
    )


def _psql() -> Path:
    psql = embedded_bin_dir() / "psql"
    if psql.exists():
        return psql
    found = shutil.which("psql")
    if found is None:
        raise SystemExit("bench: no psql found (the embedded server ships one)")
    return Path(found)


_PSQL_ENV = {"PGTZ": "UTC", "PGOPTIONS": "-c TimeZone=UTC"}


def raw_copy(url: str, csv: Path, scratch: Path) -> Step:
    psql = _psql()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        conn.execute(
            f"CREATE TABLE {RAW_TABLE} (email varchar(254), metric_type varchar(100),"
            " metric_value numeric, recorded_at timestamptz)"
        )
    _checkpoint(url)
    command = f"\\copy {RAW_TABLE} FROM '{csv}' WITH (FORMAT csv, HEADER true)"
    rows = _count_lines(csv) - 1
    env = {**os.environ, **_PSQL_ENV}
    step = _run(
        "raw \\copy (bare table)",
        rows,
        [str(psql), "-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", command],
        env,
        scratch,
    )
    if step.output != f"COPY {rows}":
        raise SystemExit(f"bench: raw copy said {step.output!r}, expected COPY {rows}")
    return step


def _psql_step(name: str, rows: int, url: str, command: str, scratch: Path) -> Step:
    argv = [str(_psql()), "-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", command]
    step = _run(name, rows, argv, {**os.environ, **_PSQL_ENV}, scratch)
    if step.output != f"COPY {rows}":
        raise SystemExit(f"bench: {name} said {step.output!r}, expected COPY {rows}")
    return step


def schema_copies(url: str, csv: Path, scratch: Path, rows: int) -> list[Step]:
    """Context rows: what ``engagement_metrics``' own upkeep costs a plain ``\\copy``.

    The rows of the raw copy, with user ids for emails, sorted as the backfill
    inserts them, go (1) into a table of the same shape with the same primary
    key, indexes and foreign key but no trigger, and (2) into
    ``engagement_metrics`` itself, rollup trigger included. Both are emptied
    again afterwards."""
    by_id = scratch / "metrics-by-user-id.csv"
    _psql_step(
        "export by user id",
        rows,
        url,
        f"\\copy ({_BY_USER_ID}) TO '{by_id}' WITH (FORMAT csv)",
        scratch,
    )
    columns = "(user_id, metric_type, metric_value, recorded_at)"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {SHAPED_TABLE}")
        conn.execute(
            f"CREATE TABLE {SHAPED_TABLE} (LIKE engagement_metrics INCLUDING ALL,"
            " FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE)"
        )
    _checkpoint(url)
    shaped = _psql_step(
        "\\copy, shape: PK, 2 indexes, FK",
        rows,
        url,
        f"\\copy {SHAPED_TABLE} {columns} FROM '{by_id}' WITH (FORMAT csv)",
        scratch,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {SHAPED_TABLE}")
    _checkpoint(url)
    into_table = _psql_step(
        "\\copy, table: the above + rollups",
        rows,
        url,
        f"\\copy engagement_metrics {columns} FROM '{by_id}' WITH (FORMAT csv)",
        scratch,
    )
    verify(url, rows)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE engagement_metrics, metric_rollups")
    by_id.unlink()
    in_file_order = scratch / "metrics-in-file-order.csv"
    _with_user_ids(url, csv, in_file_order)
    _checkpoint(url)
    file_order = _psql_step(
        "\\copy, table, in the file's order",
        rows,
        url,
        f"\\copy engagement_metrics {columns} FROM '{in_file_order}' WITH (FORMAT csv)",
        scratch,
    )
    verify(url, rows)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE engagement_metrics, metric_rollups")
    in_file_order.unlink()
    return [shaped, into_table, file_order]


def _with_user_ids(url: str, source: Path, target: Path) -> None:
    """``source``'s rows in its own order, with each user's id in place of the email."""
    with psycopg.connect(url) as conn:
        ids = {
            key: str(user_id) for key, user_id in conn.execute("SELECT email_key, id FROM users")
        }
    with (
        source.open(encoding="utf-8", newline="") as rows,
        target.open("w", encoding="utf-8") as out,
    ):
        next(rows)  # the header
        for line in rows:
            email, rest = line.split(",", 1)
            out.write(f"{ids[email]},{rest}")


def sql_only(url: str, csv: Path, scratch: Path) -> Step:
    """The backfill's own SQL without its Python: ``\\copy`` the file into the same
    staging table, then the same ``INSERT ... SELECT`` (de-duplication, index
    upkeep, foreign key checks, rollup trigger), in one transaction. What the
    schema costs; then the tables are emptied again for the real command."""
    _checkpoint(url)
    script = scratch / "sql-only.sql"
    script.write_text(
        f"{STAGING.strip()};\n"
        "ALTER TABLE engage_backfill ALTER COLUMN line SET DEFAULT 0;\n"
        "\\copy engage_backfill (email_key, metric_type, metric_value, recorded_at)"
        f" FROM '{csv}' WITH (FORMAT csv, HEADER true)\n"
        f"{INSERT_STAGED.strip()};\n",
        encoding="utf-8",
    )
    rows = _count_lines(csv) - 1
    step = _run(
        "SQL only: \\copy + INSERT ... SELECT",
        rows,
        [str(_psql()), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(script)],
        {**os.environ, **_PSQL_ENV},
        scratch,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM engagement_metrics").fetchone()
        if row is None or row[0] != rows:
            raise SystemExit(
                f"bench: the SQL-only load stored {row}, expected {rows}:\n{step.output}"
            )
        conn.execute("TRUNCATE engagement_metrics, metric_rollups")
    return step


def _engage(url: str, scratch: Path) -> tuple[list[str], dict[str, str]]:
    """How to run ``engage``, and its environment: with a bytecode cache in the
    scratch directory, as an installed package has one (a venv installed without
    bytecode, run with PYTHONDONTWRITEBYTECODE, compiles every module at each start:
    about 2 s of the command's time that no deployment pays)."""
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": url,
        "ENGAGE_JWT_SECRET": "bench-" + "s" * 40,
        "ENGAGE_DATA_DIR": str(scratch / "engage-data"),
        "PYTHONPYCACHEPREFIX": str(scratch / "pycache"),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    engage = Path(sys.executable).with_name("engage")
    argv = [str(engage)] if engage.exists() else [sys.executable, "-m", "engage_cli"]
    return argv, env


def warm_up(url: str, scratch: Path) -> None:
    """A dry run of one row before the timed steps: fills the bytecode cache."""
    argv, env = _engage(url, scratch)
    one = scratch / "warm-up.csv"
    one.write_text(
        f"email,metric_type,metric_value,recorded_at\n{_email(1)},views,1,2020-01-01T00:00:00Z\n",
        encoding="utf-8",
    )
    subprocess.run(  # noqa: S603
        [*argv, "metrics", "backfill", "--dry-run", str(one)],
        env=env,
        check=True,
        capture_output=True,
    )
    one.unlink()


def backfill(url: str, csv: Path, scratch: Path, name: str, *, expect_inserted: int) -> Step:
    _checkpoint(url)
    argv, env = _engage(url, scratch)
    rows = _count_lines(csv) - 1
    step = _run(name, rows, [*argv, "metrics", "backfill", str(csv)], env, scratch)
    found = re.search(r"loaded (\d+) metrics \((\d+) already stored\) from (\d+) rows", step.output)
    if not found:
        raise SystemExit(f"bench: unexpected backfill output:\n{step.output}")
    inserted, skipped, seen = (int(g) for g in found.groups())
    if (inserted, skipped, seen) != (expect_inserted, rows - expect_inserted, rows):
        raise SystemExit(
            f"bench: {name}: loaded {inserted}, skipped {skipped} of {seen};"
            f" expected {expect_inserted} new of {rows}"
        )
    return step


def _checkpoint(url: str) -> None:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        pass  # not a superuser on an external database: measure without it


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
    return count


def verify(url: str, expected: int) -> dict[str, int]:
    """Every row stored once, and the rollups adding up to exactly the stored rows."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM engagement_metrics),"
            "       (SELECT coalesce(sum(count), 0) FROM metric_rollups),"
            "       (SELECT count(*) FROM metric_rollups),"
            "       (SELECT sum(metric_value) FROM engagement_metrics)"
            "         IS NOT DISTINCT FROM (SELECT sum(sum) FROM metric_rollups)"
        ).fetchone()
    if row is None:
        raise SystemExit("bench: the verification query returned nothing")
    metrics, rolled, slots, sums_agree = row
    if metrics != expected or rolled != expected or not sums_agree:
        raise SystemExit(
            f"bench: stored {metrics} metrics, rollups count {rolled}; expected {expected} each"
            " and equal sums"
        )
    return {"metrics": metrics, "rollup_rows": slots}


# --- where the database comes from ----------------------------------------------


@contextmanager
def scratch_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="engage-bench-backfill-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def embedded_database(root: Path) -> Iterator[str]:
    """A throwaway embedded PostgreSQL under ``root`` (removed with it)."""
    url = start_embedded(root)
    ServerCpu.watch(root / "postgres")
    try:
        asyncio.run(upgrade(url))
        yield url
    finally:
        ServerCpu.pid = None
        stop_embedded(root / "postgres")


# --- output ---------------------------------------------------------------------


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def render(steps: Sequence[Step], raw: Step, into_table: Step) -> str:
    header = (
        "step",
        "rows",
        "seconds",
        "rows/s",
        "vs raw copy",
        "vs \\copy, table",
        "peak RSS MiB",
        "client CPU s",
        "server CPU s",
    )
    lines = [
        (
            s.name,
            f"{s.rows:,}",
            f"{s.seconds:.2f}",
            f"{s.rows_per_second:,.0f}",
            f"{s.rows_per_second / raw.rows_per_second:.2f}",
            f"{s.rows_per_second / into_table.rows_per_second:.2f}",
            f"{s.peak_rss_bytes / 2**20:.0f}",
            f"{s.cpu_seconds:.2f}",
            "-" if s.server_cpu_seconds is None else f"{s.server_cpu_seconds:.2f}",
        )
        for s in steps
    ]
    return table(header, lines)


# --- main -----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time `engage metrics backfill` against a raw \\copy of the same CSV."
    )
    parser.add_argument("--rows", type=positive, default=1_000_000)
    parser.add_argument("--users", type=positive, default=1_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--database-url", help="an empty, scratch database (default: a temporary embedded one)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.rows < SMALL_FRACTION:
        parser.error(f"--rows must be at least {SMALL_FRACTION}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    busy_before = os.getloadavg()[0]
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    small_rows = args.rows // SMALL_FRACTION
    with scratch_dir() as root:
        big = root / "metrics.csv"
        small = root / "metrics-small.csv"
        _progress(f"bench: writing {args.rows:,} + {small_rows:,} rows of CSV")
        big_bytes = write_csv(big, rows=args.rows, users=args.users, end=now, seed=args.seed)
        # The small file's rows are older than the big file's: new rows, not re-loads.
        write_csv(small, rows=small_rows, users=args.users, end=now - HISTORY, seed=args.seed + 1)
        database = (
            external_database(args.database_url, scratch_tables=[RAW_TABLE])
            if args.database_url
            else embedded_database(root / "server")
        )
        with database as url:
            with psycopg.connect(url) as conn:
                version = str((conn.execute("SHOW server_version").fetchone() or ["?"])[0])
            create_users(url, args.users)
            _progress("bench: raw \\copy into a bare table")
            raw = raw_copy(url, big, root)
            _progress("bench: \\copy into engagement_metrics' shape, then into the table")
            context = schema_copies(url, big, root, args.rows)
            _progress("bench: the backfill's SQL alone, from psql")
            floor = sql_only(url, big, root)
            warm_up(url, root)
            _progress("bench: engage metrics backfill")
            first = backfill(
                url, big, root, "engage backfill (new rows)", expect_inserted=args.rows
            )
            _progress("bench: engage metrics backfill, same file again")
            again = backfill(
                url, big, root, "engage backfill again (all stored)", expect_inserted=0
            )
            _progress(f"bench: engage metrics backfill, {small_rows:,} new rows")
            smaller = backfill(
                url,
                small,
                root,
                f"engage backfill {small_rows:,} (new rows)",
                expect_inserted=small_rows,
            )
            stored = verify(url, args.rows + small_rows)
    steps = [raw, *context, floor, first, again, smaller]
    ratio = first.rows_per_second / raw.rows_per_second
    floor_ratio = floor.rows_per_second / raw.rows_per_second
    _, into_table, file_order = context
    table_ratio = into_table.rows_per_second / raw.rows_per_second
    goal_ratio = first.rows_per_second / into_table.rows_per_second
    file_order_ratio = first.rows_per_second / file_order.rows_per_second
    flat = first.peak_rss_bytes / smaller.peak_rss_bytes if smaller.peak_rss_bytes else 0.0

    print(
        f"PostgreSQL {version}, Python {platform.python_version()}, psycopg {psycopg.__version__},"
        f" {os.cpu_count()} CPUs, load average {busy_before:.2f} at start;"
        f" {args.rows:,} rows ({big_bytes / 2**20:.0f} MiB of CSV) for {args.users:,} users"
    )
    print()
    print(render(steps, raw, into_table))
    print()
    print(
        f"backfill at {goal_ratio:.2f} x a \\copy into engagement_metrics"
        f" (goal >= {GOAL_RATIO:.2f}): {'PASS' if goal_ratio >= GOAL_RATIO else 'MISS'}"
    )
    print(
        f"for context: {ratio:.2f} x the raw \\copy into a bare table; {file_order_ratio:.2f} x a"
        f" \\copy into engagement_metrics of the rows in the file's order (that \\copy reaches"
        f" {file_order.rows_per_second / into_table.rows_per_second:.2f} x the sorted one; the"
        f" sorted one {table_ratio:.2f} x the raw \\copy)"
    )
    print(
        f"the backfill's SQL alone (no Python) reaches {floor_ratio:.2f} x raw COPY speed;"
        f" the command takes {first.seconds / floor.seconds:.2f} x its time"
    )
    print(
        f"peak RSS {first.peak_rss_bytes / 2**20:.0f} MiB for {first.rows:,} rows vs"
        f" {smaller.peak_rss_bytes / 2**20:.0f} MiB for {smaller.rows:,} rows"
        f" ({flat:.2f} x for {SMALL_FRACTION} x the rows)"
    )
    print(
        f"stored: {stored['metrics']:,} metrics, {stored['rollup_rows']:,} rollup rows;"
        f" total {time.perf_counter() - started:.0f} s"
    )

    if args.json:
        document: dict[str, Any] = {
            "config": {
                "rows": args.rows,
                "users": args.users,
                "seed": args.seed,
                "csv_bytes": big_bytes,
                "embedded": not args.database_url,
            },
            "environment": environment(version, busy_before),
            "steps": [{**asdict(s), "rows_per_second": s.rows_per_second} for s in steps],
            "ratio_to_raw_copy": ratio,
            "sql_only_ratio_to_raw_copy": floor_ratio,
            "copy_into_table_ratio_to_raw_copy": table_ratio,
            "ratio_to_copy_into_table": goal_ratio,
            "ratio_to_copy_into_table_in_file_order": file_order_ratio,
            "goal_ratio": GOAL_RATIO,
            "goal_against": "copy into engagement_metrics",
            "rss_ratio_big_to_small": flat,
            "stored": stored,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
