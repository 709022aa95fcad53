"""Outbound calls and call control, for the operator's systems (bearer ``DIAL_API_TOKEN``;
404 when unset). The token is checked before a byte of the body is read, and bodies are at most
4 KiB (:mod:`.limits`):

- ``POST /calls``: place an outbound call (``{"to": …, "voicemail_message": …}``);
- ``POST /calls/{sid}/hangup``: end a live call on any instance (the agent says goodbye first);
- ``POST /calls/{sid}/transfer``: transfer a live call to an allowed destination name.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, ValidationError

from ..dial import dial
from ..remote_control import CallNotFound, ControlResult, ControlUnavailable
from ..twilio.dial import DialError
from .deps import ServicesDep, known_call_id

__all__ = ["DialRequest", "TransferRequest", "router"]

logger = logging.getLogger("telephony.routes.calls")


class DialRequest(BaseModel):
    """Body of ``POST /calls``: the number, and optionally the message to leave when an
    answering machine picks up (``VOICEMAIL_MESSAGE`` otherwise)."""

    to: str
    voicemail_message: str | None = Field(default=None, min_length=1, max_length=500)


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
        services.refusals.warning(
            "bearer", "%s refused: bad or missing bearer token", request.url.path
        )
        raise HTTPException(status_code=401, detail="bad or missing bearer token")


router = APIRouter(dependencies=[Depends(dial_authorized)])
RING_TIMEOUT_S = 60.0  # Twilio's default ring timeout for a call created over REST


@router.post("/calls", status_code=201)
async def place(request: Request, services: ServicesDep) -> dict[str, str]:
    """Dial ``{"to": "+1…"}``; answers ``{"call_sid": …}``. 422 for a bad number or one outside
    ``DIAL_ALLOWED_PREFIXES``, 429 past ``DIAL_RATE_LIMIT``, 503 without REST or PUBLIC_URL."""
    body = await _body(request, DialRequest)
    settings, rest = services.settings, services.rest
    if rest is None or not settings.public_url:  # callbacks never come from request headers
        raise HTTPException(503, "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and PUBLIC_URL are needed")
    prefixes = settings.dial_prefixes
    if prefixes and not body.to.startswith(prefixes):
        raise HTTPException(422, "that number is outside DIAL_ALLOWED_PREFIXES")
    if not services.dial_rate.take():
        raise HTTPException(429, "DIAL_RATE_LIMIT reached; try again in a minute")
    try:
        call_sid = await dial(settings, rest, body.to, settings.public_url, body.voicemail_message)
    except DialError as exc:
        raise HTTPException(422, str(exc)) from None
    await services.registry.mark_ours(call_sid)  # call control may act on it while it rings
    ring = RING_TIMEOUT_S + services.settings.model_prewarm_timeout
    hold = await services.prewarm_call(call_sid, hold_s=ring)  # the greeting ready at answer
    if hold is not None:
        with services.logs.open(call_sid, observe=False) as log:
            log.write("prewarm", outcome="opened", hold_s=hold)
    return {"call_sid": call_sid}


@router.post("/calls/{sid}/hangup")
async def hang_up(sid: str, request: Request, services: ServicesDep) -> dict[str, str | None]:
    """End a live call: its owner makes the agent say goodbye first; without an owner, the
    carrier hangs up. Optional body ``{"reason": …}``. 404 for an unknown call (or one this
    service did not answer, dial or accept: the carrier account may carry other apps' calls),
    503 when nobody can act."""
    known_call_id(sid, "no such live call")
    body = await _body(request, HangupRequest, optional=True)
    reason = body.reason if body else "operator"
    return _answer(sid, await _act(services.control.hang_up(sid, reason)))


@router.post("/calls/{sid}/transfer")
async def transfer(sid: str, request: Request, services: ServicesDep) -> dict[str, str | None]:
    """Transfer a live call to an allowed destination name (422 for any other)."""
    known_call_id(sid, "no such live call")
    body = await _body(request, TransferRequest)
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


Body = TypeVar("Body", bound=BaseModel)


async def _body(request: Request, model: type[Body], optional: bool = False) -> Body:
    """The JSON body as ``model``, read only now (after the bearer check); 422 if malformed."""
    raw = await request.body()
    if optional and not raw.strip():
        return None  # type: ignore[return-value]
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False, include_input=False)) from None


def _answer(sid: str, result: ControlResult) -> dict[str, str | None]:
    return {"call_sid": sid, "via": result.via, "instance": result.instance}
