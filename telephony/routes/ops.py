"""Operations: ``GET /healthz`` (liveness), ``GET /readyz`` (503 while draining),
``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from ..observability.prometheus import CONTENT_TYPE_LATEST
from .deps import ServicesDep

__all__ = ["router"]

router = APIRouter()


@router.get("/metrics")
async def prometheus_metrics(services: ServicesDep) -> Response:
    """Prometheus exposition of the service metrics."""
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
async def healthz(services: ServicesDep) -> dict[str, Any]:
    """Liveness, with the number of calls in progress."""
    return {"status": "ok", "active_calls": len(services.registry.calls)}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> Response:
    """Readiness: 503 while draining, so a load balancer stops sending new calls."""
    if services.registry.draining:
        return Response('{"status":"draining"}', 503, media_type="application/json")
    return Response('{"status":"ready"}', media_type="application/json")
