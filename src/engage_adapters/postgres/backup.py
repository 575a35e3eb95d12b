"""Backups: pg_dump custom-format archives, verified, pruned, and restored in one transaction.

The programs come from the embedded server's package (PostgreSQL 18, able to
dump any older server), or from PATH when a newer major version is there.
A password in the conninfo reaches them through ``PGPASSWORD``, never the
command line, where every local user could read it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import attrs
import psycopg
from attrs import frozen
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engage_adapters.embedded_pg import embedded_bin_dir

ARCHIVE_PREFIX = "engage-"
ARCHIVE_SUFFIX = ".dump"
_ARCHIVE_NAME = re.compile(r"engage-\d{8}T\d{6}Z\.dump")
_TOC_TABLE = re.compile(r"\d+; \d+ \d+ TABLE (\S+) (\S+) \S+")
_TOC_TABLE_DATA = re.compile(r"\d+; \d+ \d+ TABLE DATA (\S+) (\S+) \S+")
_TOC_HEADER = re.compile(r";\s+(Archive created at|dbname:)\s*(.*)")
_PROGRAM_ERROR = re.compile(r"^(pg_\w+): error: ")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")
# An archive without these tables was not made by `engage db backup`.
_ENGAGE_TABLES = {("public", "users"), ("public", "schema_migrations")}


class BackupError(Exception):
    """A backup or restore failed; the message (one line) says why."""


@frozen
class PgTools:
    pg_dump: str
    pg_restore: str
    major_version: int


@frozen
class ArchiveContents:
    """What ``pg_restore --list`` says about an archive."""

    path: Path
    database: str
    created_at: str
    tables: tuple[tuple[str, str], ...]  # (schema, table) of every table with data
    defined: frozenset[tuple[str, str]] = frozenset()  # every table the archive creates


@frozen
class RestoredTable:
    name: str
    rows: int


def archive_name(moment: datetime) -> str:
    """``engage-YYYYmmddTHHMMSSZ.dump`` for a UTC moment: names sort by time."""
    return f"{ARCHIVE_PREFIX}{moment:%Y%m%dT%H%M%SZ}{ARCHIVE_SUFFIX}"


def find_tools() -> PgTools:
    """The embedded package's pg_dump and pg_restore, unless PATH has a newer major version."""
    candidates: list[tuple[PgTools, bool]] = []
    embedded = _embedded_bin_dir()
    if embedded is not None and (embedded / "pg_dump").is_file():
        dump, restore = embedded / "pg_dump", embedded / "pg_restore"
        candidates.append((PgTools(str(dump), str(restore), _major_version(str(dump))), True))
    on_path = shutil.which("pg_dump"), shutil.which("pg_restore")
    if on_path[0] and on_path[1]:
        tools = PgTools(on_path[0], on_path[1], _major_version(on_path[0]))
        candidates.append((tools, False))
    if not candidates:
        raise BackupError(
            "pg_dump and pg_restore not found: reinstall engage-suite (its embedded PostgreSQL "
            "ships them) or install the PostgreSQL client programs"
        )
    # Newest major first; on a tie, the embedded one.
    return max(candidates, key=lambda c: (c[0].major_version, c[1]))[0]


def _embedded_bin_dir() -> Path | None:
    try:
        return embedded_bin_dir()
    except Exception:  # without the embedded package, PATH may still have the programs
        return None


def _major_version(program: str) -> int:
    try:
        completed = subprocess.run(  # noqa: S603 - a program path we found, no shell
            [program, "--version"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = _VERSION.search(completed.stdout)
    return int(match[1]) if match else 0


def write_backup(
    conninfo: str, directory: Path, *, now: datetime, tools: PgTools | None = None
) -> ArchiveContents:
    """Dump the database into ``directory/engage-<now>.dump`` and verify it.

    The archive is written under a temporary name and renamed only once
    pg_dump has finished (and synced it) and ``pg_restore --list`` reads it:
    a failed or interrupted backup leaves no file that looks like a backup.
    """
    tools = tools or find_tools()
    target = directory / archive_name(now)
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:  # a file, or a link to one, where the directory should be
        raise BackupError(f"{directory} is not a directory") from None
    except OSError as exc:
        raise BackupError(f"cannot create {directory}: {exc.strerror}") from None
    if target.exists():
        raise BackupError(f"{target} already exists (one backup per second); try again")
    partial = directory / f".{target.name}.{os.getpid()}.partial"
    try:
        # Created here, mode 0600: the archive holds password hashes.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise BackupError(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        dbname, env = program_env(conninfo)
        run_program(
            [tools.pg_dump, "--format=custom", f"--file={partial}", f"--dbname={dbname}"], env
        )
        contents = read_archive(partial, tools)
        _publish(partial, target)
        _sync_directory(directory)
    finally:
        partial.unlink(missing_ok=True)
    return attrs.evolve(contents, path=target)


def _publish(partial: Path, target: Path) -> None:
    """``partial`` as ``target``, never over an archive already there: of two backups
    started in the same second (two cron jobs, one folder), one is written and the
    other fails, none is silently replaced."""
    taken = BackupError(f"{target} already exists (one backup per second); try again")
    try:
        os.link(partial, target)  # fails if the name is taken, atomically
    except FileExistsError:
        raise taken from None
    except OSError:  # a file system without hard links: the check, then the rename
        if target.exists():
            raise taken from None
        os.replace(partial, target)


def prune_backups(directory: Path, keep: int, *, spare: Path | None = None) -> list[Path]:
    """Delete ``engage-<timestamp>.dump`` archives beyond the newest ``keep``.

    Other files are left alone, as is ``spare`` (the archive just written,
    even if a clock set back makes it look older than the others).
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    archives = sorted(
        (p for p in directory.iterdir() if _ARCHIVE_NAME.fullmatch(p.name) and p.is_file()),
        key=lambda p: p.name,
        reverse=True,
    )
    removed = []
    for path in archives[keep:]:
        if spare is not None and path == spare:
            continue
        try:
            path.unlink()
        except FileNotFoundError:  # another pruner was first
            continue
        except OSError as exc:
            raise BackupError(f"cannot remove the old backup {path}: {exc.strerror}") from None
        removed.append(path)
    return removed


def newest_backup(directory: Path) -> Path:
    """The newest ``engage-<timestamp>.dump`` in ``directory`` (by name: names sort by time)."""
    try:
        archives = [p for p in directory.iterdir() if _ARCHIVE_NAME.fullmatch(p.name)]
    except FileNotFoundError:
        raise BackupError(f"no backups in {directory}: it does not exist") from None
    except OSError as exc:
        raise BackupError(f"cannot read {directory}: {exc.strerror}") from None
    if not archives:
        raise BackupError(f"no backups (engage-*.dump) in {directory}; run `engage db backup`")
    return max(archives, key=lambda p: p.name)


def read_archive(path: Path, tools: PgTools | None = None) -> ArchiveContents:
    """The archive's table of contents; ``BackupError`` if it is not a valid archive."""
    tools = tools or find_tools()
    if not path.exists():
        raise BackupError(f"no such file: {path}")
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    listing = run_program(
        [tools.pg_restore, "--list", str(path)], None, what=f"{path} is not a valid backup"
    ).splitlines()
    header = {m[1]: m[2] for m in map(_TOC_HEADER.match, listing) if m}
    return ArchiveContents(
        path=path,
        database=header.get("dbname:", "?").strip(),
        created_at=header.get("Archive created at", "?").strip(),
        tables=tuple((m[1], m[2]) for m in map(_TOC_TABLE_DATA.match, listing) if m),
        defined=frozenset((m[1], m[2]) for m in map(_TOC_TABLE.match, listing) if m),
    )


def restore_backup(
    conninfo: str, path: Path, *, tools: PgTools | None = None
) -> tuple[ArchiveContents, list[RestoredTable]]:
    """Replace the database's contents with the archive's, all or nothing.

    The archive must be an engage backup (it has the users and
    schema_migrations tables). pg_restore runs in one transaction and stops at
    the first error, so a failed restore leaves the database as it was.
    """
    tools = tools or find_tools()
    contents = require_engage_archive(path, tools)
    dbname, env = program_env(conninfo)
    run_program(
        [
            tools.pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={dbname}",
            str(path),
        ],
        env,
    )
    return contents, _row_counts(conninfo, contents.tables)


def require_engage_archive(path: Path, tools: PgTools | None = None) -> ArchiveContents:
    """``read_archive``, refusing a valid archive of some other database."""
    contents = read_archive(path, tools)
    if not _ENGAGE_TABLES.issubset(contents.defined):
        raise BackupError(
            f"{path} is a PostgreSQL archive but not an engage backup "
            "(it has no users and schema_migrations tables)"
        )
    return contents


def describe_target(conninfo: str) -> str:
    """``database NAME on HOST`` for messages: no password, no other parameters."""
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host") or "localhost")
    port = params.get("port")
    where = f"{host}:{port}" if port and not host.startswith("/") else host
    return f"database {params.get('dbname', '?')} on {where}"


def program_env(conninfo: str) -> tuple[str, dict[str, str]]:
    """The conninfo without its password, and an environment that carries it."""
    params = conninfo_to_dict(conninfo)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env


def run_program(command: Sequence[str], env: dict[str, str] | None, *, what: str = "") -> str:
    """Run a PostgreSQL program; its stdout, or ``BackupError`` with its error line."""
    try:
        completed = subprocess.run(  # noqa: S603 - fixed programs, no shell
            list(command),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
    except OSError as exc:
        raise BackupError(f"cannot run {command[0]}: {exc.strerror}") from None
    if completed.returncode != 0:
        reason = error_line(completed.stderr) or f"exit status {completed.returncode}"
        raise BackupError(f"{what}: {reason}" if what else reason)
    return completed.stdout


def error_line(stderr: str) -> str:
    """The line that says what went wrong (pg_restore leads with context lines)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    found = next((line for line in lines if "error:" in line), lines[0] if lines else "")
    return _PROGRAM_ERROR.sub(r"\1: ", found)  # "engage: error: pg_dump: error: ..." says it twice


def table_name(schema: str, table: str) -> str:
    """``table``, or ``schema.table`` outside the public schema: how messages name a table."""
    return table if schema == "public" else f"{schema}.{table}"


def count_rows(conninfo: str, tables: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """``count(*)`` of each (schema, table)."""
    counted = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for schema, table in tables:
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            row = conn.execute(query).fetchone()
            counted[schema, table] = row[0] if row else 0
    return counted


def _row_counts(conninfo: str, tables: Sequence[tuple[str, str]]) -> list[RestoredTable]:
    return [
        RestoredTable(table_name(*key), rows) for key, rows in count_rows(conninfo, tables).items()
    ]


def _sync_directory(directory: Path) -> None:
    """Make the rename durable: a crash after it must not lose the new name."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
