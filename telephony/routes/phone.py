"""Talk to the agent in the browser: the console's phone (``/console/phone``, signed in).

The page plays Twilio's part on the real Media Streams path: it asks for a call (``POST
/console/phone/calls``: admitted like a Voice webhook, a stream token, counted against
``MAX_CONCURRENT_CALLS`` and the fleet's limit), opens ``WS /console/phone/media-stream`` (the
console's session cookie and the page's own origin instead of Twilio's signature), sends
``connected`` and ``start``, then the microphone as μ-law 8 kHz 20 ms ``media`` frames; it
plays the agent's audio, echoes ``mark``s once their audio has played and honours ``clear``.
The bridge, the model, the call log and the console's call page are the same as for a phone
call; the call is marked ``simulated`` (no carrier cost).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Response, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse

from ..observability.call_log import read_call_log
from .console import TEMPLATES, SignedIn, _enabled, _signed_in
from .deps import ServicesDep, known_call_id
from .twilio import bridge_media_socket

__all__ = ["router"]

router = APIRouter(prefix="/console/phone")
MEDIA_PATH = "/console/phone/media-stream"


@router.get("", response_class=HTMLResponse)
async def phone_page(request: Request, services: ServicesDep) -> Response:
    if not _signed_in(request, _enabled(services)):
        return RedirectResponse("/console/login", status_code=303)
    context = {"backend": services.backend, "media_path": MEDIA_PATH}
    return TEMPLATES.TemplateResponse(request, "phone.html", context)


@router.post("/calls", dependencies=[SignedIn])
async def new_call(request: Request, services: ServicesDep) -> dict[str, Any]:
    """A browser call, admitted as a Voice webhook is: its CallSid, stream token and the
    AccountSid its ``start`` must carry; 503 when there is no room."""
    if request.headers.get("x-console") != "1":  # a plain cross-site form cannot set it
        raise HTTPException(403, "missing X-Console header")
    call_sid = "CA" + secrets.token_hex(16)
    admission = await services.registry.answer(call_sid)
    with services.logs.open(call_sid) as log:
        log.write(
            "webhook",
            **{"from": "browser"},
            to="console",
            direction="inbound",
            call_status="ringing",
            stream_url=MEDIA_PATH,
            simulated=True,
            **({"degraded": True} if admission.degraded else {}),
        )
        if admission.token is None:
            log.write("call.rejected", reason=admission.reason, twiml="busy")
            raise HTTPException(503, f"no room for a call: {admission.reason}")
    return {
        "call_sid": call_sid,
        "token": admission.token,
        "account_sid": services.settings.twilio_account_sid or "AC" + "0" * 32,
    }


@router.get("/calls/{sid}/transcript.json", dependencies=[SignedIn])
async def transcript(sid: str, services: ServicesDep) -> dict[str, Any]:
    """What was said so far (the call log, flushed at most a second late), and whether the
    call has ended."""
    known_call_id(sid)
    path = services.settings.call_log_dir / f"{sid}.jsonl"
    records = await asyncio.to_thread(read_call_log, path) if path.exists() else []
    return {
        "said": [
            {"who": "caller" if r["event"] == "transcript.caller" else "agent", "text": r["text"]}
            for r in records
            if r["event"] in ("transcript.caller", "transcript.agent") and r.get("text")
        ],
        "ended": bool(records) and records[-1]["event"] == "call.end",
    }


@router.websocket("/media-stream")
async def media_stream(websocket: WebSocket, services: ServicesDep) -> None:
    """The page's media stream: a signed-in console session from this server's own page,
    then one bridged call, as ``/media-stream`` runs Twilio's."""
    token = services.settings.console_token
    origin = urlsplit(websocket.headers.get("origin", ""))
    same_origin = origin.netloc == websocket.headers.get("host", "")
    if token is None or not same_origin or not _signed_in(websocket, token.get_secret_value()):
        await websocket.close(code=1008)  # before accept: the handshake is refused (403)
        return
    await bridge_media_socket(websocket, services)
