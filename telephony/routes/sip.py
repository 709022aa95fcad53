"""``POST /openai/webhook``: OpenAI's ``realtime.call.incoming`` (the SIP path)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from .deps import ServicesDep

__all__ = ["router"]

router = APIRouter()


@router.post("/openai/webhook")
async def openai_webhook(request: Request, services: ServicesDep) -> Response:
    """Verified with ``webhooks.unwrap``; 404 unless ``OPENAI_WEBHOOK_SECRET`` is set."""
    if services.sip is None:
        raise HTTPException(404, "SIP calls are not enabled (OPENAI_WEBHOOK_SECRET)")
    status, body = await services.sip.webhook(await request.body(), request.headers)
    return JSONResponse(body, status_code=status)
