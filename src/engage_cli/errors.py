"""The one place where errors become CLI output: one line on stderr and an exit code."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import typer

from engage_adapters.bootstrap import (
    OPERATOR_ERRORS,
    UNAVAILABLE_ERRORS,
    UNKNOWN_USER_ERRORS,
    GaveWay,
    unavailable_from,
    unknown_user_from,
)
from engage_adapters.settings import SettingsError
from engage_cli.files import FileError
from engage_core.errors import EngageError, ValidationFailed

T = TypeVar("T")

USER_ERROR = 1
# What writing the output meets when its disk is full or gone (its reader leaving is EPIPE).
_OUTPUT_LOST = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})
# Failures whose message is the whole story for the operator.
_TOLD_AS_THEY_ARE: tuple[type[Exception], ...] = (*OPERATOR_ERRORS, FileError)


@contextmanager
def until_the_reader_leaves() -> Iterator[None]:
    """Output to stdout that ends quietly, in success, when its reader goes away
    (`| head` has all it wants), as Unix tools that print do."""
    try:
        yield
    except BrokenPipeError:
        # As the Python docs advise: no second error when the interpreter flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


def output_failed(exc: OSError) -> NoReturn:
    """Writing the output failed (a full disk): one line, exit 1, and no second error
    when the interpreter flushes what is left of stdout."""
    with contextlib.suppress(OSError):
        typer.echo(f"engage: error: cannot write the output: {exc.strerror or exc}", err=True)
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(USER_ERROR)


def is_lost_output(exc: OSError) -> bool:
    return exc.filename is None and exc.errno in _OUTPUT_LOST


def fail(message: str) -> NoReturn:
    """Print ``engage: error: <message>`` on stderr and exit 1."""
    typer.echo(f"engage: error: {message}", err=True)
    raise typer.Exit(USER_ERROR)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn the errors a user can cause into one clear line and exit status 1."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        outage = unavailable_from(exc)
        if isinstance(outage, GaveWay):
            fail(f"{outage.detail} ({outage.reason})")
        if outage is not None:
            fail(f"database unreachable: {outage.reason}")
        fail(f"database error: {_first_line(exc)}")
    except UNKNOWN_USER_ERRORS as exc:
        gone = unknown_user_from(exc)
        fail(gone.detail if gone is not None else _first_line(exc))
    except SettingsError as exc:
        fail("; ".join(exc.faults))
    except ValidationFailed as exc:
        fail("; ".join(f"{e.field} {e.message}" for e in exc.errors))
    except EngageError as exc:
        fail(exc.detail)
    except _TOLD_AS_THEY_ARE as exc:
        fail(str(exc))
    except BrokenPipeError:
        raise  # the reader went away; the command decides what that means
    except OSError as exc:  # files the operator named: unreadable, unwritable, missing
        if is_lost_output(exc):
            output_failed(exc)
        fail(f"{exc.filename or 'file system'}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        typer.echo("engage: interrupted", err=True)
        sys.exit(130)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def guarded(fn: Callable[[], T]) -> T:
    with reported_errors():
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover


def option_value(option: str, check: Callable[[], T]) -> T:
    """``check()``, the core's rules for an option's value; a fault of theirs is one
    line naming the option as it was typed (``--since must be …``)."""
    try:
        return check()
    except ValidationFailed as exc:
        fail(f"{option} " + "; ".join(error.message for error in exc.errors))
