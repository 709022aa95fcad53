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
    """Liveness, with the number of calls in progress (and, in a fleet, Redis's state)."""
    body: dict[str, Any] = {"status": "ok", "active_calls": len(services.registry.calls)}
    if services.state.shared:
        body.update(instance=services.state.instance, redis="up" if services.state.up else "down")
    return body


@router.get("/readyz")
async def readyz(services: ServicesDep) -> Response:
    """Readiness: 503 while draining (and, in a fleet, while this instance is full), so a load
    balancer sends new calls elsewhere."""
    registry = services.registry
    if registry.draining:
        return Response('{"status":"draining"}', 503, media_type="application/json")
    if not registry.ready:
        return Response('{"status":"full"}', 503, media_type="application/json")
    return Response('{"status":"ready"}', media_type="application/json")
