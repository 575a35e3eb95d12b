"""Idempotency-Key through the real app when PostgreSQL cuts the connection between
a metric's insert and the recording of its answer: a 503, nothing stored, and a
retry with the key stores the metric once and is replayed from then on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

METRICS = "/api/dashboard/metrics"
BATCH = "/api/dashboard/metrics/batch"
METRIC = {"metric_type": "views", "metric_value": 1}
# Once per test, the server ends the backend that records a key's answer, as a
# restart or a network cut would: after the insert, before the answer is stored.
CUT_BEFORE_THE_ANSWER = """
CREATE SEQUENCE IF NOT EXISTS test_answer_cuts;
ALTER SEQUENCE test_answer_cuts RESTART;
CREATE OR REPLACE FUNCTION test_cut_before_the_answer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('test_answer_cuts') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER test_cut_before_the_answer
    BEFORE UPDATE ON idempotency_keys
    FOR EACH ROW WHEN (NEW.status IS NOT NULL)
    EXECUTE FUNCTION test_cut_before_the_answer();
"""


@pytest.fixture
def cut_before_the_answer(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(CUT_BEFORE_THE_ANSWER)


@pytest.mark.usefixtures("cut_before_the_answer")
@pytest.mark.parametrize(
    ("endpoint", "body", "rows"),
    [(METRICS, METRIC, 1), (BATCH, {"items": [METRIC, METRIC, METRIC]}, 3)],
    ids=["metric", "batch"],
)
async def test_a_write_cut_off_before_its_answer_is_503_and_a_retry_stores_it_once(
    client: httpx.AsyncClient,
    api: Any,
    expect_problem: Callable[..., dict[str, Any]],
    db: Callable[..., list[tuple[Any, ...]]],
    endpoint: str,
    body: dict[str, Any],
    rows: int,
) -> None:
    auth = await api.new_user("ada@example.com")
    keyed = {**auth, "Idempotency-Key": "cut-1"}

    cut = await client.post(endpoint, json=body, headers=keyed)
    problem = expect_problem(cut, 503)
    assert problem["type"].endswith(":unavailable")
    assert db("SELECT count(*) FROM engagement_metrics") == [(0,)]  # a 503 that stored nothing

    retry = await client.post(endpoint, json=body, headers=keyed)
    again = await client.post(endpoint, json=body, headers=keyed)

    assert retry.status_code == again.status_code == 201, retry.text
    assert again.json() == retry.json()
    assert db("SELECT count(*) FROM engagement_metrics") == [(rows,)]
