"""Which failures mean "the user this change names is not in the database": every
foreign key of the schema references ``users``, so a foreign-key violation is a
change for a user who never was, or who was deleted while the change ran (an
account deleted under its own request: the session check passed, then the
deletion committed before the insert). As with ``outage.py``, the repositories
let psycopg's exception through and each entry point asks ``unknown_user_from``
at its boundary: a 401 over HTTP (the session ended with the account), one
line and exit 1 in the CLI.
"""

from __future__ import annotations

import psycopg

from engage_core.errors import UnknownUser

# What the entry points catch before asking ``unknown_user_from``.
UNKNOWN_USER_ERRORS: tuple[type[Exception], ...] = (psycopg.errors.ForeignKeyViolation,)
UNKNOWN_USER = "no such user: the account does not exist, or was deleted meanwhile"


def unknown_user_from(exc: BaseException) -> UnknownUser | None:
    """The ``UnknownUser`` that ``exc`` stands for, or None."""
    if isinstance(exc, UnknownUser):
        return exc
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return UnknownUser(UNKNOWN_USER)
    return None
