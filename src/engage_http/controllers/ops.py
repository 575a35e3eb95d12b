"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get

from engage_http.auth import services_of
from engage_http.dto import HealthOut
from engage_http.responses import json


class OpsController(Controller):
    tags = ["ops"]

    @get("/healthz", summary="The process is up")
    async def healthz(self) -> HealthOut:
        return HealthOut(status="ok")

    @get("/readyz", summary="The database (and Redis, when configured) answer")
    async def readyz(self, request: Request[Any, Any, Any]) -> Response[HealthOut]:
        checks = await services_of(request).check_ready()
        ready = all(state == "ok" for state in checks.values())
        body = HealthOut(status="ok" if ready else "unavailable", checks=checks)
        return json(body, status=200 if ready else 503)
