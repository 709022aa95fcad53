"""Twilio's routes: the Voice webhook, the Media Streams socket and status callbacks.

- ``POST /incoming-call`` (signed) → TwiML ``<Connect><Stream>`` with a per-call stream token
  (and the call's model session opened meanwhile: ``MODEL_PREWARM``), or
  ``<Reject reason="busy"/>`` at capacity or while draining; with ``?transfer=<key>``, a warm
  transfer's person leg: its briefing's stream, then a ``<Pause>`` until the conference; a
  SIP call's warm transfer referred to ``sip:warm-<key>@<SIP_TRANSFER_DOMAIN>`` streams with
  its handoff (the caller holds at once);
  a call to a number in ``LIVE_NUMBERS`` (dialled: from one) streams to
  ``/media-stream/live`` and is not pre-warmed;
- ``WS /media-stream`` (signed handshake; token checked at ``start``) → the bridge
  (``/media-stream/live``: GPT-Live's);
- ``POST /call-status`` (signed) → ``call.status`` in the call's log (a final status closes
  a pre-warmed session no stream took);
- ``POST /amd-status`` (signed) → who answered an outbound call, to the call's owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import SplitResult, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response, WebSocket
from starlette.websockets import WebSocketState

from ..remote_control import CallNotFound, ControlUnavailable
from ..services import Services
from ..transfers import handoff_key
from ..twilio.dial import AMD_PATH
from ..twilio.ids import is_call_sid
from ..twilio.signatures import request_url
from ..twilio.twiml import (
    LIVE_STREAM_PATH,
    MEDIA_STREAM_PATH,
    connect_stream,
    media_stream_url,
    reject,
    say_and_hang_up_twiml,
)
from .deps import ServicesDep

__all__ = [
    "STREAM_PARAMETERS",
    "StarletteTwilioSocket",
    "bridge_media_socket",
    "router",
    "signed",
]

logger = logging.getLogger("telephony.routes.twilio")

# Webhook fields passed to the stream as <Parameter>s (they come back in `start`).
STREAM_PARAMETERS = ("CallSid", "From", "To", "Direction")
SIGNATURE_SETTINGS = "x-twilio-webhooks-signature-settings"
# a request through a proxy or tunnel carries one of these; the development mode refuses it
PROXY_HEADERS = ("x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded")
MAX_FORM_FIELDS = 100  # Twilio's Voice webhook sends about 20
MAX_PARAMETER_CHARS = 64
TRANSFER_PAUSE_S = 30  # a warm transfer's person waits this long after the briefing stream
TRANSFER_GONE = "Sorry, the caller is no longer waiting. Goodbye."

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
    services: Services,
    url: str,
    params: dict[str, str],
    headers: Mapping[str, str],
    what: str,
) -> bool:
    """Whether the request is Twilio's: ``X-Twilio-Signature`` signs ``url`` and ``params``
    with the key ``X-Twilio-Webhooks-Signature-Settings`` names. Refusals are logged (at a
    bounded rate) and counted. Without ``TWILIO_AUTH_TOKEN`` (trial mode) only what this
    machine's trial key signed is taken, and nothing that came through a proxy or tunnel;
    the loopback development mode (``ALLOW_UNSIGNED``) takes unsigned local requests."""
    checker, metrics = services.checker, services.metrics
    if services.trial and any(name in headers for name in PROXY_HEADERS):
        services.refusals.warning(
            "trial tunnel",
            "%s refused: trial mode (no TWILIO_AUTH_TOKEN) takes only local calls; for "
            "Twilio's, set TWILIO_AUTH_TOKEN and PUBLIC_URL",
            what,
        )
        metrics.rejected.labels(reason="bad_signature").inc()
        return False
    if checker is None:
        if not services.settings.allow_unsigned:
            services.refusals.warning("no token", "%s refused: TWILIO_AUTH_TOKEN is not set", what)
        elif any(name in headers for name in PROXY_HEADERS):
            services.refusals.warning(
                "tunnel", "%s refused: development mode takes no proxied requests", what
            )
        else:
            return True
        metrics.rejected.labels(reason="bad_signature").inc()
        return False
    signature = headers.get("x-twilio-signature")
    if checker.valid(url, params, signature, headers.get(SIGNATURE_SETTINGS)):
        return True
    metrics.rejected.labels(reason="bad_signature").inc()
    services.refusals.warning(
        "signature",
        "%s refused: %s X-Twilio-Signature for %s",
        what,
        "invalid" if signature else "missing",
        url,
    )
    return False


async def twilio_form(request: Request, services: ServicesDep) -> dict[str, str]:
    """FastAPI dependency: the webhook's form params, once its signature checked out (403)
    and, when ``TWILIO_ACCOUNT_SID`` is set, its ``AccountSid`` is ours (403)."""
    form = await request.form(max_fields=MAX_FORM_FIELDS)
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    url = request_url(
        services.settings.public_url,
        request.url.path,
        request.url.query,
        request.headers,
        request.url.scheme,
    )
    if not signed(services, url, params, request.headers, "webhook"):
        raise HTTPException(status_code=403, detail="invalid Twilio signature")
    account = services.settings.twilio_account_sid
    if account and params.get("AccountSid") != account:
        services.refusals.warning(
            "account", "webhook refused: AccountSid is not TWILIO_ACCOUNT_SID"
        )
        raise HTTPException(status_code=403, detail="not this account's call")
    if not is_call_sid(params.get("CallSid")):
        services.refusals.warning("callsid", "webhook refused: missing or malformed CallSid")
        raise HTTPException(status_code=400, detail="missing or malformed CallSid")
    return params


TwilioForm = Annotated[dict[str, str], Depends(twilio_form)]


def caller_text(value: str | None) -> str | None:
    """A caller-supplied value (From, To) fit for TwiML and logs: printable characters only,
    at most 64."""
    if value is None:
        return None
    return "".join(ch for ch in value if ch.isprintable())[:MAX_PARAMETER_CHARS]


@router.post("/incoming-call")
async def incoming_call(request: Request, params: TwilioForm, services: ServicesDep) -> Response:
    """Twilio's Voice webhook: stream the call to us, or refuse it as busy."""
    call_sid = params["CallSid"]
    settings, registry = services.settings, services.registry
    transfer = request.query_params.get("transfer")  # a warm transfer's person leg
    if transfer is not None and not await _briefing_found(services, transfer, call_sid):
        return Response(say_and_hang_up_twiml(TRANSFER_GONE), media_type="application/xml")
    handoff = await _handoff_found(services, params.get("To"), call_sid)
    admission = await registry.answer(call_sid)
    # the stream's model session opens while the TwiML travels; the stream comes back here
    # (INSTANCE_PUBLIC_URL) only to adopt a session opened here (not a briefing's: its agent
    # is known only at start; nor a handoff's: it does not greet)
    outbound = (params.get("Direction") or "").startswith("outbound")
    ours = params.get("From") if outbound else params.get("To")
    live = services.live is not None and services.live.takes(ours)  # LIVE_NUMBERS
    first = admission.first and transfer is None and handoff is None and not live
    hold = await services.prewarm_call(call_sid) if first else None
    own = settings.instance_public_url if hold is not None and not registry.draining else None
    host = request.headers.get("host", "")
    path = LIVE_STREAM_PATH if live else MEDIA_STREAM_PATH
    url = media_stream_url(own or settings.public_url, host, request.url.scheme, path)
    with services.logs.open(call_sid) as log:
        log.write(
            "webhook",
            **{"from": caller_text(params.get("From"))},
            to=caller_text(params.get("To")),
            direction=caller_text(params.get("Direction")),
            call_status=caller_text(params.get("CallStatus")),
            stream_url=url,
            **({"backend": "live"} if live else {}),
            **({"degraded": True} if admission.degraded else {}),
            **({"simulated": True} if services.trial else {}),
        )
        if admission.token is None:
            log.write("call.rejected", reason=admission.reason, twiml="busy")
            return Response(reject("busy"), media_type="application/xml")
        if hold is not None:
            log.write("prewarm", outcome="opened", hold_s=hold)
    stream_params = {k: caller_text(params[k]) or "" for k in STREAM_PARAMETERS if k in params}
    stream_params["token"] = admission.token
    if services.trial:  # only this machine could sign it: a simulated call, no carrier
        stream_params["Simulated"] = "true"
    if transfer is not None:  # the person waits after the stream until the conference
        stream_params["Transfer"] = transfer
    if handoff is not None:  # a SIP call's warm transfer goes on here
        stream_params["Handoff"] = handoff
    pause = TRANSFER_PAUSE_S if transfer is not None else 0
    return Response(connect_stream(url, stream_params, pause), media_type="application/xml")


async def _briefing_found(services: Services, key: str, call_sid: str) -> bool:
    """Whether a warm transfer's briefing ``key`` is stored (logged on the leg when not)."""
    if services.transfers is not None and await services.transfers.find(key) is not None:
        return True
    with services.logs.open(call_sid, observe=False) as log:
        log.write("transfer.unknown", why="no briefing for this transfer (expired or unknown)")
    return False


async def _handoff_found(services: Services, to: str | None, call_sid: str) -> str | None:
    """The handoff key when ``To`` is a SIP call's warm transfer referred to us and its
    handoff is stored; else None (an unknown one is logged, and the call is answered as any
    call: the caller is on the line)."""
    key = handoff_key(to, services.settings.sip_transfer_domain)
    if key is None or services.transfers is None:
        return None
    if await services.transfers.find_handoff(key) is not None:
        return key
    with services.logs.open(call_sid, observe=False) as log:
        log.write("transfer.unknown", why="no handoff for this SIP transfer (expired or unknown)")
    return None


@router.websocket(MEDIA_STREAM_PATH)
@router.websocket(LIVE_STREAM_PATH)
async def media_stream(websocket: WebSocket, services: ServicesDep) -> None:
    """Twilio Media Streams: a signed handshake (for ``INSTANCE_PUBLIC_URL`` when the stream
    came to it, else ``PUBLIC_URL``), then one bridged call (on GPT-Live on
    :data:`LIVE_STREAM_PATH`, which the webhook names for a number in ``LIVE_NUMBERS``)."""
    settings = services.settings
    base = settings.public_url
    own = settings.instance_public_url
    if own and _same_host(urlsplit(own), websocket.headers.get("host", "")):
        base = own  # the TwiML sent it here directly: Twilio signed this URL
    url = request_url(
        base,
        websocket.url.path,
        websocket.url.query,
        websocket.headers,
        websocket.url.scheme,
        websocket=True,
    )
    if not signed(services, url, {}, websocket.headers, "media stream"):
        await websocket.close(code=1008)  # before accept: the handshake is refused (403)
        return
    live = websocket.url.path.endswith(LIVE_STREAM_PATH)
    await bridge_media_socket(websocket, services, live=live)


def _same_host(url: SplitResult, host: str) -> bool:
    """Whether a ``Host`` header names ``url``'s host (case-insensitive, default port or
    none)."""
    default = 443 if url.scheme == "https" else 80
    name, _, port = host.lower().rpartition(":") if ":" in host else (host.lower(), "", "")
    try:
        port_number = int(port) if port else default
    except ValueError:
        return False
    return name == (url.hostname or "") and port_number == (url.port or default)


async def bridge_media_socket(websocket: WebSocket, services: Services, live: bool = False) -> None:
    """Accept an authenticated media socket and run its call (the bridge) to the end. At most
    ``MAX_CONCURRENT_CALLS`` sockets wait for ``start`` at once: a new one evicts the oldest
    (Twilio sends ``start`` within milliseconds of the upgrade, so the oldest is idle; the
    handshake's signature is the same for every call, so idle sockets opened with a signature
    seen once must not keep a real call's stream out)."""
    registry = services.registry
    while len(registry.awaiting_start) >= registry.max_calls:
        oldest = next(iter(registry.awaiting_start))
        del registry.awaiting_start[oldest]
        oldest.evict()
        services.refusals.warning(
            "awaiting", "media stream: the oldest socket waiting for start closed for a new one"
        )
    await websocket.accept()
    call = services.media_call(StarletteTwilioSocket(websocket), live=live)
    task = asyncio.current_task()
    assert task is not None
    registry.sockets[task] = call
    registry.awaiting_start[call] = None
    try:
        await call.run()
    finally:
        registry.awaiting_start.pop(call, None)
        registry.sockets.pop(task, None)
        await registry.release(call.call_sid if call.stream_sid else None)


@router.post(AMD_PATH)
async def amd_status(request: Request, params: TwilioForm, services: ServicesDep) -> Response:
    """Twilio's asynchronous answering machine detection result (``AnsweredBy``) for an
    outbound call; it reaches the call's owner on whichever instance runs it. The message to
    leave on a machine rides in this URL's ``voicemail`` query (signed with it)."""
    call_sid = params["CallSid"]
    answered_by = caller_text(params.get("AnsweredBy")) or "unknown"
    message = request.query_params.get("voicemail") or services.settings.voicemail_message
    with services.logs.open(call_sid, observe=False) as log:
        log.write(
            "amd",
            answered_by=answered_by,
            detection_ms=caller_text(params.get("MachineDetectionDuration")),
        )
    transfer = request.query_params.get("transfer")
    if transfer is not None:  # a warm transfer's person: a machine declines
        if services.transfers is not None:
            await services.transfers.on_amd(transfer, answered_by, call_sid)
        return Response(status_code=204)
    try:
        await services.control.answered(call_sid, answered_by, message[:500])
    except (CallNotFound, ControlUnavailable) as exc:
        logger.info("call %s: AMD %s and nobody could act: %s", call_sid, answered_by, exc)
    return Response(status_code=204)


@router.post("/call-status")
async def call_status(request: Request, params: TwilioForm, services: ServicesDep) -> Response:
    """Twilio's status callbacks (initiated, ringing, answered, completed, busy, …); a final
    one closes the call's pre-warmed model session, if no stream took it, and decides a warm
    transfer whose person's call it is (``?transfer=``), if nothing did before."""
    status = caller_text(params.get("CallStatus"))
    with services.logs.open(params["CallSid"], observe=False) as log:
        log.write(
            "call.status",
            status=status,
            direction=caller_text(params.get("Direction")),
            duration_s=caller_text(params.get("CallDuration")),
            sequence=caller_text(params.get("SequenceNumber")),
        )
    services.end_prewarm(params["CallSid"], status or "")
    transfer = request.query_params.get("transfer")
    if transfer is not None and services.transfers is not None:
        await services.transfers.on_status(transfer, status or "", params["CallSid"])
    return Response(status_code=204)
