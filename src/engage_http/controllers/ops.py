"""Liveness and readiness probes (/metrics is in ``engage_http.prometheus``)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.openapi import ResponseSpec

from engage_http.auth import services_of
from engage_http.dto import HealthOut
from engage_http.responses import json


class OpsController(Controller):
    tags = ["ops"]

    @get("/healthz", summary="The process is up")
    async def healthz(self) -> HealthOut:
        return HealthOut(status="ok")

    @get(
        "/readyz",
        summary="The database answers (Redis, when configured, is reported but only degrades)",
        responses={
            503: ResponseSpec(
                data_container=HealthOut,
                description="The database is unreachable",
                generate_examples=False,
            )
        },
    )
    async def readyz(self, request: Request[Any, Any, Any]) -> Response[HealthOut]:
        readiness = await services_of(request).readiness()
        body = HealthOut(status="ok" if readiness.ready else "unavailable", checks=readiness.checks)
        return json(body, status=200 if readiness.ready else 503)
