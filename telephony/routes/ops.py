"""Operations: ``GET /healthz`` (liveness), ``GET /readyz`` (503 while draining),
``GET /metrics`` (Prometheus)."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request, Response

from ..observability.prometheus import CONTENT_TYPE_LATEST
from .deps import ServicesDep

__all__ = ["router"]

router = APIRouter()


@router.get("/metrics")
async def prometheus_metrics(request: Request, services: ServicesDep) -> Response:
    """Prometheus exposition of the service metrics; with ``METRICS_TOKEN`` set, only for
    ``Authorization: Bearer <METRICS_TOKEN>`` (401 otherwise)."""
    expected = services.settings.metrics_token
    if expected is not None:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {expected.get_secret_value()}".encode()):
            return Response("bad or missing bearer token", 401)
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
async def healthz(services: ServicesDep) -> dict[str, Any]:
    """Liveness, with the number of calls in progress (and, in a fleet, Redis's state)."""
    registry = services.registry
    body: dict[str, Any] = {
        "status": "ok",
        "active_calls": len(registry.calls),
        "awaiting_start": len(registry.awaiting_start),
    }
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
