"""How handlers are given their services: by name, one dependency after another."""

from __future__ import annotations

from litestar import Litestar
from litestar.routes import HTTPRoute
from tests.http.conftest import Api


def _order(app: Litestar, path: str, method: str) -> list[set[str]]:
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path == path:
            _, model = route.route_handler_map[method]
            return [{d.key for d in batch} for batch in model.dependency_batches]
    raise AssertionError(f"no route {method} {path}")


def test_a_handler_with_several_services_resolves_them_one_at_a_time(app: Litestar) -> None:
    batches = _order(app, "/api/dashboard/metrics", "POST")

    assert all(len(batch) == 1 for batch in batches)
    order = [key for batch in batches for key in batch]
    assert {"principal", "metrics", "idempotency", "auth", "api_keys"} <= set(order)
    # What the caller is found with comes before the caller.
    assert order.index("auth") < order.index("principal")
    assert order.index("api_keys") < order.index("principal")


async def test_each_service_reaches_its_handler(api: Api) -> None:
    auth = await api.new_user("deps@example.com")

    recorded = await api.record(auth, metric_type="page_view", metric_value=2)

    assert await api.list_all(auth) == [recorded]
