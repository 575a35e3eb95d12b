"""The public in-memory wiring that another service's tests can start from."""

from __future__ import annotations

from decimal import Decimal

from engage_core.testing import in_memory_services


async def test_sign_up_log_in_record_and_summarise_over_the_fakes() -> None:
    app = in_memory_services()
    await app.auth.sign_up(email="ada@example.com", password="correct horse battery")
    login = await app.auth.log_in(email="ADA@example.com", password="correct horse battery")
    me = await app.auth.authenticate(login.access_token)
    await app.metrics.record(me.user_id, metric_type="page_view", metric_value=3)
    await app.metrics.record(me.user_id, metric_type="page_view", metric_value="4.5")
    summary = await app.metrics.summary(me.user_id, bucket="day", tz="Europe/Berlin")
    [series] = summary.series
    [point] = series.points
    assert (point.count, point.sum, point.min, point.max) == (2, Decimal("7.5"), 3, Decimal("4.5"))


async def test_deleting_the_account_removes_everything_it_owned() -> None:
    app = in_memory_services()
    user = await app.auth.sign_up(email="ada@example.com", password="correct horse battery")
    login = await app.auth.log_in(email="ada@example.com", password="correct horse battery")
    me = await app.auth.authenticate(login.access_token)
    await app.metrics.record(me.user_id, metric_type="page_view", metric_value=1)
    await app.auth.delete_account(me, password="correct horse battery")
    assert await app.users.get(user.id) is None
    assert (await app.metrics.list(user.id)).items == ()
