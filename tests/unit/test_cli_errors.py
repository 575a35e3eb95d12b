"""The CLI's one place for the errors a user can cause: one line, exit 1."""

from __future__ import annotations

import psycopg
import pytest
import typer

from engage_adapters.bootstrap import unavailable_from
from engage_cli.errors import reported_errors


def test_a_change_for_a_user_deleted_meanwhile_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.Exit) as exited, reported_errors():
        raise psycopg.errors.ForeignKeyViolation('insert or update on table "engagement_metrics"')
    assert exited.value.exit_code == 1
    assert capsys.readouterr().err == (
        "engage: error: no such user: the account does not exist, or was deleted meanwhile\n"
    )


def test_a_deadlock_the_database_broke_is_one_line_saying_to_try_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.Exit) as exited, reported_errors():
        raise psycopg.errors.DeadlockDetected("deadlock detected")
    assert exited.value.exit_code == 1
    assert capsys.readouterr().err == (
        "engage: error: the database gave way to a concurrent change; try again"
        " (deadlock detected)\n"
    )


@pytest.mark.parametrize(
    "error", [psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure]
)
def test_a_transaction_the_database_rolled_back_for_another_is_a_retry(
    error: type[psycopg.OperationalError],
) -> None:
    """Nothing of it was kept, and the same request succeeds again: a 503 over HTTP."""
    unavailable = unavailable_from(error("rolled back"))
    assert unavailable is not None
    assert unavailable.retry_after == 1
    assert "try again" in unavailable.detail
