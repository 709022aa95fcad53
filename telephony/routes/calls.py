"""Outbound calls and call control, for the operator's systems (bearer ``DIAL_API_TOKEN``;
404 when unset):

- ``POST /calls``: place an outbound call;
- ``POST /calls/{sid}/hangup``: end a live call on any instance (the agent says goodbye first);
- ``POST /calls/{sid}/transfer``: transfer a live call to an allowed destination name.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from ..dial import dial
from ..observability.call_log import safe_call_id
from ..remote_control import CallNotFound, ControlResult, ControlUnavailable
from ..twilio.dial import DialError
from ..twilio.signatures import request_url
from .deps import ServicesDep

__all__ = ["DialRequest", "TransferRequest", "router"]

logger = logging.getLogger("telephony.routes.calls")


class DialRequest(BaseModel):
    """Body of ``POST /calls``."""

    to: str


class HangupRequest(BaseModel):
    """Body of ``POST /calls/{sid}/hangup`` (optional)."""

    reason: str = Field(default="operator", max_length=200)


class TransferRequest(BaseModel):
    """Body of ``POST /calls/{sid}/transfer``: a name from ``TRANSFER_TARGETS``."""

    destination: str = Field(max_length=80)


def dial_authorized(request: Request, services: ServicesDep) -> None:
    """FastAPI dependency: ``Authorization: Bearer <DIAL_API_TOKEN>``; off (404) when unset."""
    expected = services.settings.dial_api_token
    if expected is None:
        raise HTTPException(status_code=404, detail="outbound calls are not enabled")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {expected.get_secret_value()}".encode()):
        logger.warning("%s refused: bad or missing bearer token", request.url.path)
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


@router.post("/calls/{sid}/hangup")
async def hang_up(
    sid: str, services: ServicesDep, body: HangupRequest | None = None
) -> dict[str, str | None]:
    """End a live call: its owner makes the agent say goodbye first; without an owner, the
    carrier hangs up. 404 for an unknown call, 503 when nobody can act."""
    _known_format(sid)
    reason = body.reason if body else "operator"
    return _answer(sid, await _act(services.control.hang_up(sid, reason)))


@router.post("/calls/{sid}/transfer")
async def transfer(sid: str, body: TransferRequest, services: ServicesDep) -> dict[str, str | None]:
    """Transfer a live call to an allowed destination name (422 for any other)."""
    _known_format(sid)
    if body.destination not in services.features.transfer_targets:
        raise HTTPException(422, f"{body.destination!r} is not one of TRANSFER_TARGETS")
    return _answer(sid, await _act(services.control.transfer(sid, body.destination)))


async def _act(action: Awaitable[ControlResult]) -> ControlResult:
    try:
        return await action
    except CallNotFound:
        raise HTTPException(404, "no such live call") from None
    except ControlUnavailable as exc:
        raise HTTPException(503, str(exc)) from None


def _known_format(sid: str) -> None:
    try:
        safe_call_id(sid)
    except ValueError:
        raise HTTPException(404, "no such live call") from None


def _answer(sid: str, result: ControlResult) -> dict[str, str | None]:
    return {"call_sid": sid, "via": result.via, "instance": result.instance}
