"""``POST /calls``: place an outbound call (bearer ``DIAL_API_TOKEN``; 404 when unset)."""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel

from ..dial import dial
from ..twilio.dial import DialError
from ..twilio.signatures import request_url
from .deps import ServicesDep

__all__ = ["DialRequest", "router"]

logger = logging.getLogger("telephony.routes.calls")


class DialRequest(BaseModel):
    """Body of ``POST /calls``."""

    to: str


def dial_authorized(request: Request, services: ServicesDep) -> None:
    """FastAPI dependency: ``Authorization: Bearer <DIAL_API_TOKEN>``; off (404) when unset."""
    expected = services.settings.dial_api_token
    if expected is None:
        raise HTTPException(status_code=404, detail="outbound calls are not enabled")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {expected.get_secret_value()}".encode()):
        logger.warning("POST /calls refused: bad or missing bearer token")
        raise HTTPException(status_code=401, detail="bad or missing bearer token")


router = APIRouter(dependencies=[Depends(dial_authorized)])


@router.post("/calls", status_code=201)
async def place(request: Request, body: DialRequest, services: ServicesDep) -> dict[str, str]:
    """Dial ``body.to``; answers ``{"call_sid": …}``, 422 for a bad number, 503 without REST."""
    settings, rest = services.settings, services.rest
    if rest is None:
        raise HTTPException(503, "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are needed")
    base = settings.public_url or request_url(None, "", "", request.headers, request.url.scheme)
    try:
        call_sid = await dial(settings, rest, body.to, base)
    except DialError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"call_sid": call_sid}
