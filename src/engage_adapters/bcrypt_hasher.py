"""Password hashing with bcrypt, off the event loop.

bcrypt reads at most 72 bytes and the bcrypt package refuses longer input, so
every password is first reduced to a fixed 44-byte HMAC-SHA256 digest (as
Django's BCryptSHA256 does, keyed so that leaked plain SHA-256 hashes from
elsewhere cannot be tried against ours). Two passwords that share their first
72 bytes are therefore different passwords, and no length is an error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import bcrypt

from engage_core.model import Password

PREFIX = "bcrypt-sha256$"
_PREHASH_KEY = b"engage-suite bcrypt-sha256 v1"
MIN_ROUNDS = 4
MAX_ROUNDS = 31
T = TypeVar("T")


def _prehash(password: str) -> bytes:
    digest = hmac.new(_PREHASH_KEY, password.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest)


def _rounds_of(bcrypt_hash: str) -> int | None:
    # $2b$12$<53 chars of salt and digest>
    parts = bcrypt_hash.split("$")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return int(parts[2])


def _yield_to_requests() -> None:
    """Run this hashing thread only on cycles nothing else wants.

    A login's bcrypt is meant to be slow; the event loop's requests are not.
    At equal priority a login storm takes the cores from every other request.
    On Linux the thread goes to SCHED_IDLE: any woken request preempts it at
    once (reads keep more of their throughput and tail than at nice 19; the
    figures are in bench/README.md), and logins still get every idle cycle, so
    alone they keep their rate. Nice 19 is the fallback, and where neither
    exists this is a no-op. Linux applies both per thread; lowering one's own
    priority needs no privilege.
    """
    native_id = threading.get_native_id()
    # Not permitted here (OSError): keep what the step before gave.
    if hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, native_id, 19)
    if hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(native_id, os.SCHED_IDLE, os.sched_param(0))


class BcryptPasswordHasher:
    """bcrypt with ``rounds`` as its cost, hashing in a pool of one thread per core."""

    def __init__(self, rounds: int = 12, *, threads: int | None = None) -> None:
        if not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
            raise ValueError(f"bcrypt rounds must be {MIN_ROUNDS} to {MAX_ROUNDS}")
        self.rounds = rounds
        self._threads = threads or os.cpu_count() or 1
        self._executor: ThreadPoolExecutor | None = None

    async def hash(self, password: Password) -> str:
        return await self._run(self.hash_now, password)

    async def verify(self, password: Password, password_hash: str) -> bool:
        return await self._run(self.verify_now, password, password_hash)

    def needs_rehash(self, password_hash: str) -> bool:
        if not password_hash.startswith(PREFIX):
            return True
        rounds = _rounds_of(password_hash.removeprefix(PREFIX))
        return rounds is None or rounds < self.rounds

    # Blocking forms, for callers that are already on a worker thread.

    def hash_now(self, password: Password) -> str:
        salt = bcrypt.gensalt(rounds=self.rounds)
        return PREFIX + bcrypt.hashpw(_prehash(password.value), salt).decode("ascii")

    def verify_now(self, password: Password, password_hash: str) -> bool:
        try:
            if password_hash.startswith(PREFIX):
                stored = password_hash.removeprefix(PREFIX).encode("ascii")
                return bcrypt.checkpw(_prehash(password.value), stored)
            if password_hash.startswith("$2"):
                # A plain bcrypt hash imported from elsewhere: it only ever saw 72 bytes.
                raw = password.value.encode("utf-8")
                return len(raw) <= 72 and bcrypt.checkpw(raw, password_hash.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return False
        return False

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._threads,
                thread_name_prefix="bcrypt",
                initializer=_yield_to_requests,
            )
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
