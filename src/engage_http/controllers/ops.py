"""Liveness and readiness probes, and the Prometheus metrics."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.enums import MediaType
from litestar.openapi import ResponseSpec
from litestar.plugins.prometheus import PrometheusController

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


class PrometheusExport(PrometheusController):
    """Litestar's /metrics, documented as what it is: Prometheus text."""

    @get(
        media_type=MediaType.TEXT,
        tags=["ops"],
        summary="Prometheus metrics of every worker",
        response_description="The Prometheus text format",
    )
    async def get(self) -> Response[str]:
        response: Response[str] = await PrometheusController.get.fn(self)
        return response
