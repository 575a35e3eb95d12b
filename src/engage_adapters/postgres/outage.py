"""Which failures mean "the database cannot be reached", told apart from bugs.

The repositories let psycopg's exceptions through; each entry point (HTTP,
CLI) asks ``unavailable_from`` once, at its boundary, and answers an outage as
such (503 with ``Retry-After``; one line and exit 1), while any other error
stays what it is.
"""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout, TooManyRequests

from engage_core.errors import Unavailable

# What the entry points catch before asking ``unavailable_from``.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError, Unavailable)
# About how long the pool takes to reconnect once the server is back.
RETRY_AFTER = 2
CLIENT_DETAIL = "the database is unreachable; try again shortly"

# psycopg raises OperationalError for serialization failures, bad passwords
# and more; only these SQLSTATEs say the server cannot serve now: connection
# exceptions (08), insufficient resources (53: too many connections, disk
# full, out of memory) and a server shutting down, crashed, starting or that
# ended an idle session (57P01-03, 57P05).
_OUTAGE_CLASSES = ("08", "53")
_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "57P05"})


# A deadlock or a serialization failure (class 40): the server rolled the whole
# transaction back to let a concurrent one through (an account deleted while its
# sessions are ended elsewhere). Nothing of it was kept, and the same request
# succeeds when tried again: a 503, not a 500.
_CONFLICT_CLASS = "40"
CONFLICT_DETAIL = "the database gave way to a concurrent change; try again"


class GaveWay(Unavailable):
    """The database rolled a transaction back for a concurrent one (class 40): no
    outage, though answered as one (try again); the CLI says which."""


def unavailable_from(exc: BaseException) -> Unavailable | None:
    """The ``Unavailable`` that ``exc`` stands for, or None when it is no outage."""
    if isinstance(exc, Unavailable):
        return exc
    if isinstance(exc, psycopg.OperationalError) and (exc.sqlstate or "").startswith(
        _CONFLICT_CLASS
    ):
        return GaveWay(CONFLICT_DETAIL, retry_after=1, reason=_first_line(exc))
    if isinstance(exc, PoolTimeout | PoolClosed | TooManyRequests) or (
        isinstance(exc, psycopg.OperationalError) and _is_outage(exc.sqlstate)
    ):
        return Unavailable(CLIENT_DETAIL, retry_after=RETRY_AFTER, reason=_first_line(exc))
    return None


def _is_outage(sqlstate: str | None) -> bool:
    # No SQLSTATE: libpq's own failure (connection refused, lost, closed, timed out).
    return sqlstate is None or sqlstate.startswith(_OUTAGE_CLASSES) or sqlstate in _OUTAGE_STATES


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
