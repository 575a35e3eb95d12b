"""The CLI's one place for the errors a user can cause: one line, exit 1."""

from __future__ import annotations

import psycopg
import pytest
import typer

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
