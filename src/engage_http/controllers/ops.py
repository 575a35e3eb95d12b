"""Liveness and readiness probes (/metrics is in ``engage_http.prometheus``)."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec

from engage_http.dependencies import Injected, ReadinessCheck
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
    async def readyz(self, readiness: Injected[ReadinessCheck]) -> Response[HealthOut]:
        state = await readiness()
        body = HealthOut(status="ok" if state.ready else "unavailable", checks=state.checks)
        return json(body, status=200 if state.ready else 503)
