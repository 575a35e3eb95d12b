"""The public in-memory wiring that another service's tests can start from."""

from __future__ import annotations

import inspect
from decimal import Decimal

from engage_core import ports, testing
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


def test_engage_core_testing_has_a_fake_of_every_port() -> None:
    """What the guide promises a service that installs engage-core alone: for each
    protocol in ``engage_core.ports``, a public class with every one of its methods."""
    fakes = [getattr(testing, n) for n in testing.__all__ if inspect.isclass(getattr(testing, n))]
    missing = []
    for name in ports.__all__:
        port = getattr(ports, name)
        if not getattr(port, "_is_protocol", False):
            continue
        methods = {m for m in dir(port) if not m.startswith("_") and callable(getattr(port, m))}
        if not any(all(callable(getattr(fake, m, None)) for m in methods) for fake in fakes):
            missing.append(name)
    assert missing == []
