"""Twilio's routes: the Voice webhook, the Media Streams socket and status callbacks.

- ``POST /incoming-call`` (signed) → TwiML ``<Connect><Stream>`` with a per-call stream token,
  or ``<Reject reason="busy"/>`` at capacity or while draining;
- ``WS /media-stream`` (signed handshake; token checked at ``start``) → the bridge;
- ``POST /call-status`` (signed) → ``call.status`` in the call's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, WebSocket
from starlette.websockets import WebSocketState

from ..observability.call_log import safe_call_id
from ..services import Services
from ..twilio.signatures import request_url
from ..twilio.twiml import MEDIA_STREAM_PATH, connect_stream, media_stream_url, reject
from .deps import ServicesDep

__all__ = ["STREAM_PARAMETERS", "StarletteTwilioSocket", "router", "signed"]

logger = logging.getLogger("telephony.routes.twilio")

# Webhook fields passed to the stream as <Parameter>s (they come back in `start`).
STREAM_PARAMETERS = ("CallSid", "From", "To", "Direction")

router = APIRouter()


class StarletteTwilioSocket:
    """Adapts Starlette's ``WebSocket`` to the bridge's :class:`telephony.bridge.TwilioSocket`."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self._closed = False

    async def receive(self) -> str | bytes | None:
        if self._closed:
            return None
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            self._closed = True
            return None
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def send(self, text: str) -> None:
        if self._closed:
            raise ConnectionError("media socket closed")
        await self._ws.send_text(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        if self._ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self._ws.close(code, reason)


def signed(
    services: Services, url: str, params: dict[str, str], signature: str | None, what: str
) -> bool:
    """Whether ``X-Twilio-Signature`` signs ``url`` and ``params``; refusals are logged and
    counted. Without ``TWILIO_AUTH_TOKEN`` everything is refused, unless ``ALLOW_UNSIGNED``."""
    checker, metrics = services.checker, services.metrics
    if checker is None:
        if services.settings.allow_unsigned:
            return True
        logger.warning("%s refused: TWILIO_AUTH_TOKEN is not set", what)
        metrics.rejected.labels(reason="bad_signature").inc()
        return False
    if checker.valid(url, params, signature):
        return True
    metrics.rejected.labels(reason="bad_signature").inc()
    logger.warning(
        "%s refused: %s X-Twilio-Signature for %s (CallSid %r)",
        what,
        "invalid" if signature else "missing",
        url,
        params.get("CallSid", "")[:40],
    )
    return False


async def twilio_form(request: Request, services: ServicesDep) -> dict[str, str]:
    """FastAPI dependency: the webhook's form params, once its signature checked out (403)."""
    form = await request.form()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    url = request_url(
        services.settings.public_url,
        request.url.path,
        request.url.query,
        request.headers,
        request.url.scheme,
    )
    if not signed(services, url, params, request.headers.get("x-twilio-signature"), "webhook"):
        raise HTTPException(status_code=403, detail="invalid Twilio signature")
    return params


TwilioForm = Annotated[dict[str, str], Depends(twilio_form)]


@router.post("/incoming-call")
async def incoming_call(request: Request, params: TwilioForm, services: ServicesDep) -> Response:
    """Twilio's Voice webhook: stream the call to us, or refuse it as busy."""
    call_sid = params.get("CallSid", "")
    try:
        safe_call_id(call_sid)
    except ValueError:
        logger.warning("webhook without a valid CallSid refused")
        return Response("missing or malformed CallSid", status_code=400)
    settings, registry = services.settings, services.registry
    admission = await registry.answer(call_sid)
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    scheme = request.headers.get("x-forwarded-proto") or request.url.scheme
    url = media_stream_url(settings.public_url, host, scheme)
    with services.logs.open(call_sid) as log:
        log.write(
            "webhook",
            **{"from": params.get("From")},
            to=params.get("To"),
            direction=params.get("Direction"),
            call_status=params.get("CallStatus"),
            stream_url=url,
            **({"degraded": True} if admission.degraded else {}),
        )
        if admission.token is None:
            log.write("call.rejected", reason=admission.reason, twiml="busy")
            return Response(reject("busy"), media_type="application/xml")
    stream_params = {k: params[k] for k in STREAM_PARAMETERS if k in params}
    stream_params["token"] = admission.token
    return Response(connect_stream(url, stream_params), media_type="application/xml")


@router.websocket(MEDIA_STREAM_PATH)
async def media_stream(websocket: WebSocket, services: ServicesDep) -> None:
    """Twilio Media Streams: a signed handshake, then one bridged call."""
    url = request_url(
        services.settings.public_url,
        websocket.url.path,
        websocket.url.query,
        websocket.headers,
        websocket.url.scheme,
        websocket=True,
    )
    signature = websocket.headers.get("x-twilio-signature")
    if not signed(services, url, {}, signature, "media stream"):
        await websocket.close(code=1008)  # before accept: the handshake is refused (403)
        return
    await websocket.accept()
    call = services.media_call(StarletteTwilioSocket(websocket))
    registry = services.registry
    task = asyncio.current_task()
    assert task is not None
    registry.sockets[task] = call
    try:
        await call.run()
    finally:
        registry.sockets.pop(task, None)
        await registry.release(call.call_sid if call.stream_sid else None)


@router.post("/call-status")
async def call_status(params: TwilioForm, services: ServicesDep) -> Response:
    """Twilio's status callbacks (initiated, ringing, answered, completed, busy, …)."""
    call_sid = params.get("CallSid", "")
    try:
        safe_call_id(call_sid)
    except ValueError:
        return Response("missing or malformed CallSid", status_code=400)
    with services.logs.open(call_sid, observe=False) as log:
        log.write(
            "call.status",
            status=params.get("CallStatus"),
            direction=params.get("Direction"),
            duration_s=params.get("CallDuration"),
            sequence=params.get("SequenceNumber"),
        )
    return Response(status_code=204)
