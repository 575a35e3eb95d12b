"""`engage metrics backfill` and `export`, as an operator runs them, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from engage_adapters.bootstrap import build_services
from engage_adapters.settings import load_settings
from engage_core.testing import FakePasswordHasher
from support.cli import cli_settings, engage, engage_read_one_line

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HEADER = "email,metric_type,metric_value,recorded_at\n"
HALF = 5_000


@pytest.fixture
def env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    environment = cli_settings(pg_url, tmp_path / "data", monkeypatch)
    with psycopg.connect(pg_url) as conn:
        conn.execute("TRUNCATE users, engagement_metrics, sessions, metric_rollups CASCADE")
    asyncio.run(_create_users(environment, ["ada@example.com", "bob@example.com"]))
    return environment


async def _create_users(environment: dict[str, str], emails: list[str]) -> None:
    settings = load_settings(environment)
    async with build_services(settings, hasher=FakePasswordHasher()) as services:
        for email in emails:
            await services.admin.create_user(email=email, password="password-123")


def counts(pg_url: str) -> tuple[int, int, Decimal]:
    with psycopg.connect(pg_url) as conn:
        metrics, total = conn.execute(
            "SELECT count(*), coalesce(sum(metric_value), 0) FROM engagement_metrics"
        ).fetchone()  # type: ignore[misc]
        rollup_count, rollup_sum = conn.execute(
            "SELECT coalesce(sum(count), 0), coalesce(sum(sum), 0) FROM metric_rollups"
        ).fetchone()  # type: ignore[misc]
    assert (rollup_count, rollup_sum) == (metrics, total), "rollups follow every load"
    return metrics, rollup_count, total


def rows(n: int, email: str = "ada@example.com") -> str:
    return "".join(
        f"{email},views,{i % 7}.5,{(T0 + timedelta(minutes=i)).isoformat()}\n" for i in range(n)
    )


def test_a_csv_loads_once_and_loading_it_again_adds_nothing(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "m.csv"
    file.write_text(HEADER + rows(500) + rows(300, "BOB@example.com"))
    first = engage(env, "metrics", "backfill", str(file))
    assert first.returncode == 0, first.stderr
    assert "loaded 800 metrics" in first.stdout
    assert counts(pg_url)[0] == 800
    again = engage(env, "metrics", "backfill", str(file))
    assert again.returncode == 0, again.stderr
    assert "loaded 0 metrics (800 already stored)" in again.stdout
    assert counts(pg_url)[0] == 800


def test_one_row_is_counted_in_the_singular(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "one.csv"
    file.write_text(HEADER + rows(1))
    loaded = engage(env, "metrics", "backfill", str(file))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == "loaded 1 metric (0 already stored) from 1 row\n"


def test_bad_rows_are_reported_by_line_and_nothing_is_loaded(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "bad.csv"
    file.write_text(
        HEADER
        + "ada@example.com,views,1,2026-01-01T00:00:00Z\n"  # line 2: fine
        + "ada@example.com,views,abc,2026-01-01T00:00:00Z\n"  # 3: not a number
        + "ada@example.com,views,true,2026-01-01T00:00:00Z\n"  # 4: not a number
        + "ada@example.com,views,1,2026-01-01T00:00:00\n"  # 5: naive
        + "nobody@example.com,views,1,2026-01-01T00:00:00Z\n"  # 6: unknown user
        + "ada@example.com,bad type,1,2026-01-01T00:00:00Z\n"  # 7: bad type
        + "ada@example.com,views,1e15,2026-01-01T00:00:00Z\n"  # 8: too large
        + "ada@example.com,views,1,2999-01-01T00:00:00Z\n"  # 9: far future
    )
    result = engage(env, "metrics", "backfill", str(file))
    assert result.returncode == 1
    lines = [
        int(line.split(":")[0].removeprefix("line "))
        for line in result.stderr.splitlines()
        if line.startswith("line ")
    ]
    assert lines == [3, 4, 5, 6, 7, 8, 9]
    assert "email nobody@example.com is not a user" in result.stderr
    assert result.stderr.strip().endswith("7 of 8 rows are bad; nothing was loaded")
    assert "Traceback" not in result.stderr
    assert counts(pg_url)[0] == 0


def test_a_bad_row_spanning_lines_is_named_by_the_line_it_starts_on(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "quoted.csv"
    file.write_text(
        HEADER
        + 'ada@example.com,"views\nand more",1,2026-01-01T00:00:00Z\n'  # lines 2-3
        + "ada@example.com,views,abc,2026-01-01T00:00:00Z\n"  # line 4
        + '"ada@example.com","a,b",1,2026-01-01T00:00:00Z\n'  # line 5
    )
    result = engage(env, "metrics", "backfill", str(file))
    assert result.returncode == 1
    assert [line.split(":")[0] for line in result.stderr.splitlines()[:3]] == [
        "line 2",
        "line 4",
        "line 5",
    ]
    assert counts(pg_url)[0] == 0


def test_one_bad_row_at_line_100000_stops_the_whole_load(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "big.csv"
    file.write_text(HEADER + rows(99_998) + "ada@example.com,views,NaN,2026-01-01T00:00:00Z\n")
    result = engage(env, "metrics", "backfill", str(file))
    assert result.returncode == 1
    assert "line 100000: metric_value" in result.stderr
    assert counts(pg_url)[0] == 0


def test_a_file_repeating_itself_loads_every_row_and_loading_it_again_nothing(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    half = rows(HALF)  # the second half of the file equals the first
    file = tmp_path / "twice.csv"
    file.write_text(HEADER + half + half)
    first = engage(env, "metrics", "backfill", str(file))
    assert first.returncode == 0, first.stderr
    assert f"loaded {2 * HALF} metrics (0 already stored)" in first.stdout
    again = engage(env, "metrics", "backfill", str(file))
    assert f"loaded 0 metrics ({2 * HALF} already stored)" in again.stdout
    assert counts(pg_url)[0] == 2 * HALF


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "the file is empty"),
        ("email,metric_type,metric_value\n", "missing: recorded_at"),
        ("email,metric_type,metric_value,recorded_at,extra\n", "; unknown: extra\n"),
        ("email,metric_type,metric_value,recorded_at,Email\n", "; twice: email\n"),
        ("metric_type,metric_value,x,x\n", "unknown: x, x; missing: recorded_at; twice: x\n"),
    ],
)
def test_a_bad_header_is_one_line_and_exit_1(
    env: dict[str, str], tmp_path: Path, header: str, message: str
) -> None:
    file = tmp_path / "h.csv"
    file.write_text(header)
    result = engage(env, "metrics", "backfill", str(file))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("bad_line", [2, 3, 500])
def test_bytes_that_are_not_utf8_are_reported_on_their_own_line(
    env: dict[str, str], pg_url: str, tmp_path: Path, fmt: str, bad_line: int
) -> None:
    lines = [HEADER.encode()] if fmt == "csv" else []
    for i in range(600):
        moment = (T0 + timedelta(minutes=i)).isoformat()
        if fmt == "csv":
            lines.append(f"ada@example.com,views,1,{moment}\n".encode())
        else:
            row = {"email": "ada@example.com", "metric_type": "views", "metric_value": 1}
            lines.append((json.dumps({**row, "recorded_at": moment}) + "\n").encode())
    lines[bad_line - 1] = lines[bad_line - 1].replace(b"views", b"vi\xe9ws")  # Latin-1 "é"
    file = tmp_path / f"m.{fmt}"
    file.write_bytes(b"".join(lines))

    result = engage(env, "metrics", "backfill", str(file))

    assert result.returncode == 1
    assert result.stderr == f"engage: error: line {bad_line}: the file is not valid UTF-8\n"
    assert counts(pg_url)[0] == 0


def test_user_option_loads_a_file_without_an_email_column_from_stdin(
    env: dict[str, str], pg_url: str
) -> None:
    data = "metric_type,metric_value,recorded_at\nclicks,2,2026-02-01T00:00:00Z\n"
    result = engage(env, "metrics", "backfill", "-", "--user", "Bob@Example.com", stdin=data)
    assert result.returncode == 0, result.stderr
    assert counts(pg_url)[0] == 1


def test_a_dry_run_validates_and_stores_nothing(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "m.csv"
    file.write_text(HEADER + rows(10))
    result = engage(env, "metrics", "backfill", str(file), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "all 10 rows are valid" in result.stdout
    assert counts(pg_url)[0] == 0


def test_jsonl_keeps_numbers_exact_and_reports_bad_lines(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "m.jsonl"
    good = {"email": "ada@example.com", "metric_type": "v", "recorded_at": "2026-01-01T00:00:00Z"}
    file.write_text(
        json.dumps({**good, "metric_value": 0.1})
        + "\n"
        + "\n"
        + '{"email": "ada@example.com", "metric_type": "v",'
        ' "metric_value": 123456789012345.678901234567, "recorded_at": "2026-01-02T00:00:00Z"}\n'
    )
    assert engage(env, "metrics", "backfill", str(file)).returncode == 0
    with psycopg.connect(pg_url) as conn:
        values = [
            r[0] for r in conn.execute("SELECT metric_value FROM engagement_metrics ORDER BY 1")
        ]
    assert values == [Decimal("0.1"), Decimal("123456789012345.678901234567")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "[1, 2]\n"
        + "not json\n"
        + json.dumps({**good, "metric_value": True})
        + "\n"
        + json.dumps({**good, "metric_value": 1, "colour": "red"})
        + "\n"
    )
    result = engage(env, "metrics", "backfill", str(bad))
    assert result.returncode == 1
    assert [line.split(":")[0] for line in result.stderr.splitlines()[:4]] == [
        "line 1",
        "line 2",
        "line 3",
        "line 4",
    ]


def test_a_jsonl_integer_of_any_length_is_refused_as_too_large(
    env: dict[str, str], tmp_path: Path
) -> None:
    file = tmp_path / "long.jsonl"
    file.write_text(
        '{"email": "ada@example.com", "metric_type": "v", "metric_value": '
        + "9" * 5000
        + ', "recorded_at": "2026-01-01T00:00:00Z"}\n'
    )
    result = engage(env, "metrics", "backfill", str(file))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "line 1: metric_value must be less than 10^15 in magnitude"
    )


def test_export_is_valid_backfill_input_round_trip(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "m.csv"
    file.write_text(HEADER + rows(200) + rows(100, "bob@example.com"))
    assert engage(env, "metrics", "backfill", str(file)).returncode == 0
    before = counts(pg_url)
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"export.{fmt}"
        exported = engage(env, "metrics", "export", "--format", fmt, "-o", str(out))
        assert exported.returncode == 0, exported.stderr
        with psycopg.connect(pg_url) as conn:
            conn.execute("DELETE FROM engagement_metrics")
        assert counts(pg_url)[0] == 0
        loaded = engage(env, "metrics", "backfill", str(out))
        assert loaded.returncode == 0, loaded.stderr
        assert counts(pg_url) == before


def test_export_filters_by_user_and_time(env: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "m.csv"
    file.write_text(HEADER + rows(60) + rows(60, "bob@example.com"))
    assert engage(env, "metrics", "backfill", str(file)).returncode == 0
    result = engage(
        env,
        "metrics",
        "export",
        "--user",
        "bob@example.com",
        "--since",
        "2026-01-01T00:10:00Z",
        "--until",
        "2026-01-01T00:20:00+00:00",
    )
    assert result.returncode == 0, result.stderr
    body = result.stdout.splitlines()
    assert body[0] == HEADER.strip()
    assert len(body) == 1 + 10
    assert all(line.startswith("bob@example.com,") for line in body[1:])


@pytest.mark.parametrize(
    "args",
    [
        ["export", "--user", "nobody@example.com"],
        ["export", "--since", "yesterday"],
        ["backfill", "/nonexistent/file.csv"],
        ["backfill", "file.txt"],
    ],
)
def test_operator_mistakes_are_one_line_and_exit_1(env: dict[str, str], args: list[str]) -> None:
    result = engage(env, "metrics", *args)
    assert result.returncode == 1
    assert result.stderr.startswith("engage: error: ")
    assert result.stderr.count("\n") == 1


def test_export_to_a_directory_names_it_and_leaves_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "out.csv"
    target.mkdir()

    result = engage(env, "metrics", "export", "-o", str(target))

    assert result.returncode == 1
    assert result.stderr == f"engage: error: cannot write to {target}: it is a directory\n"
    assert list(tmp_path.glob(".out.csv.*")) == []


@pytest.mark.parametrize("command", [["user", "list"], ["metrics", "export"]])
def test_output_cut_short_by_its_reader_ends_quietly_in_success(
    env: dict[str, str], pg_url: str, command: list[str]
) -> None:
    # Far more than a pipe holds (64 KiB), so the command writes into a closed pipe.
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO users (id, email, email_key, password_hash)"
            " SELECT gen_random_uuid(), 'u' || n || '@example.com', 'u' || n || '@example.com',"
            " 'x' FROM generate_series(1, 3000) AS n"
        )
        conn.execute(
            "INSERT INTO engagement_metrics (user_id, metric_type, metric_value, recorded_at)"
            " SELECT id, 'views', 1, now() FROM users"
        )
    code, errors = engage_read_one_line(env, *command)

    assert code == 0, errors
    assert b"Traceback" not in errors
