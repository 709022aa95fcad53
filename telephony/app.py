"""The FastAPI app: thin routes that validate, build the object that does the work, and hand over.

- ``POST /incoming-call``: Twilio's Voice webhook (signed) -> TwiML ``<Connect><Stream>`` with a
  per-call stream token, or ``<Reject reason="busy"/>`` at capacity or while draining.
- ``WS /media-stream``: Twilio Media Streams (signed handshake; token checked at ``start``) ->
  :class:`telephony.call.MediaStreamCall`.
- ``GET /healthz``: liveness; ``GET /readyz``: 503 while draining.
"""

import asyncio
import contextlib
import functools
import hmac
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from agents.realtime import RealtimeAgent
from fastapi import Depends, FastAPI, HTTPException, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from openai import AsyncOpenAI
from pydantic import BaseModel
from starlette.websockets import WebSocketState

from .agent import build_default_agent, load_agent
from .call import TRY_AGAIN_LATER, CallFeatures, CallLimits, MediaStreamCall, Refused
from .call_log import CallLog, safe_call_id
from .config import Settings, load_settings
from .dial import DialError, place_call
from .local_model import LocalRealtimeModel, load_local_stack
from .media_stream import Start
from .metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from .models import ModelFactory, SessionFactory
from .registry import CallRegistry
from .security import SignatureChecker, StreamTokens, request_url
from .sip import SipCalls
from .twilio_rest import TwilioCalls
from .twiml import MEDIA_STREAM_PATH, connect_stream, media_stream_url, reject

__all__ = ["WS_MAX_BYTES", "CallRegistry", "create_app"]

logger = logging.getLogger("telephony.app")

# Webhook fields passed to the stream as <Parameter>s (they come back in `start`).
STREAM_PARAMETERS = ("CallSid", "From", "To", "Direction")
WS_MAX_BYTES = 64 * 1024  # uvicorn's ws_max_size: Twilio's media messages are about 300 bytes


class DialRequest(BaseModel):
    """Body of ``POST /calls``."""

    to: str


class StarletteTwilioSocket:
    """Adapts Starlette's ``WebSocket`` to the bridge's :class:`telephony.call.TwilioSocket`."""

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


def choose_backend(settings: Settings) -> str:
    """``REALTIME_BACKEND``; ``auto`` means OpenAI with a key, the offline model without."""
    if settings.realtime_backend != "auto":
        return settings.realtime_backend
    return "openai" if settings.openai_api_key is not None else "local"


def create_app(
    settings: Settings | None = None,
    *,
    agent: RealtimeAgent | None = None,
    model_factory: ModelFactory | None = None,
    limits: CallLimits | None = None,
) -> FastAPI:
    """Build the service.

    Args:
        settings: configuration; read from the environment when omitted.
        agent: the agent for every call; else ``AGENT`` (``module:attribute``), else the default.
        model_factory: a zero-argument callable making a ``RealtimeModel`` per call (tests, or
            other transports); defaults to the SDK's OpenAI WebSocket model.
        limits: per-call limits; by default from the settings (idle timeout, maximum duration).
    """
    settings = settings or load_settings()
    transfer_targets = settings.transfer_destinations
    if agent is None:
        agent = (
            load_agent(settings.agent)
            if settings.agent
            else build_default_agent(transfer_targets.keys())
        )
    limits = limits or CallLimits(
        idle_timeout=settings.idle_timeout, max_duration=settings.max_call_duration
    )
    backend = "custom" if model_factory is not None else choose_backend(settings)
    if backend == "local":
        stack = load_local_stack()  # raises LocalModelUnavailable with what to install
        model_factory = functools.partial(LocalRealtimeModel, stack)
    sessions = SessionFactory(settings, agent, model_factory)
    secret = settings.stream_token_secret
    registry = CallRegistry(
        settings.max_concurrent_calls,
        StreamTokens(secret.get_secret_value().encode() if secret else None),
    )
    token = settings.twilio_auth_token
    checker = SignatureChecker(token.get_secret_value()) if token else None
    rest = (
        TwilioCalls(
            settings.twilio_account_sid, token.get_secret_value(), settings.twilio_api_base_url
        )
        if token and settings.twilio_account_sid
        else None
    )

    metrics = ServiceMetrics(active_calls=lambda: len(registry.calls))
    features = CallFeatures(
        greeting=settings.greeting,
        dtmf_timeout=settings.dtmf_timeout,
        hangup_grace=settings.hangup_grace,
        transfer_targets=transfer_targets,
        twilio=rest,
        observer=metrics.observe,
        on_frame=metrics.frame,
        backend=backend,
    )

    features_for_sip = CallFeatures(
        greeting=settings.greeting,
        hangup_grace=settings.hangup_grace,
        transfer_targets=transfer_targets,
        observer=metrics.observe,
    )

    def admit(start: Start) -> None:
        """The registry's admission check, counted when it refuses."""
        try:
            registry.admit(start)
        except Refused as refused:
            reason = "busy" if refused.code == TRY_AGAIN_LATER else "stream_token"
            metrics.rejected.labels(reason=reason).inc()
            raise

    async def apologise(call_sid: str, reason: str) -> str:
        """We end the call (model failure, shutdown, time limit): say so over the REST API."""
        if rest is None:
            return "none (no Twilio REST credentials; stream closed)"
        text = settings.apology_message if reason.startswith("model") else settings.goodbye_message
        said = await rest.say_and_hang_up(call_sid, text)
        return "twilio_rest" if said else "twilio_rest (call already ended)"

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if checker is None and settings.allow_unsigned:
            logger.warning(
                "DEVELOPMENT MODE (ALLOW_UNSIGNED=true): unsigned Twilio requests are accepted. "
                "Never expose this server through a tunnel in this mode."
            )
        elif checker is None:
            logger.warning(
                "TWILIO_AUTH_TOKEN is not set: every Twilio request will be refused (403). "
                "Set it, or ALLOW_UNSIGNED=true for local development on loopback."
            )
        if backend == "local":
            logger.warning(
                "No OpenAI: calls are answered by the EMBEDDED OFFLINE MODEL (a read-back demo, "
                "not an assistant). Set OPENAI_API_KEY for the real agent."
            )
        elif settings.openai_api_key is None and backend == "openai":
            logger.warning("OPENAI_API_KEY is not set: the model cannot connect")
        yield
        await registry.drain(0, goodbye_s=settings.drain_timeout or 5.0)

    app = FastAPI(title="realtime-telephony", lifespan=lifespan)
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.calls = registry
    app.state.active_calls = registry.sockets
    app.state.metrics = metrics

    def signed(url: str, params: dict[str, str], signature: str | None, what: str) -> bool:
        if checker is None:
            if settings.allow_unsigned:
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

    async def twilio_form(request: Request) -> dict[str, str]:
        """FastAPI dependency: the webhook's form params, once its signature checked out."""
        form = await request.form()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        url = request_url(
            settings.public_url,
            request.url.path,
            request.url.query,
            request.headers,
            request.url.scheme,
        )
        if not signed(url, params, request.headers.get("x-twilio-signature"), "webhook"):
            raise HTTPException(status_code=403, detail="invalid Twilio signature")
        return params

    @app.post("/incoming-call")
    async def incoming_call(
        request: Request, params: Annotated[dict[str, str], Depends(twilio_form)]
    ) -> Response:
        call_sid = params.get("CallSid", "")
        try:
            safe_call_id(call_sid)
        except ValueError:
            logger.warning("webhook without a valid CallSid refused")
            return Response("missing or malformed CallSid", status_code=400)
        stream_token = registry.answer(call_sid)
        host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
        scheme = request.headers.get("x-forwarded-proto") or request.url.scheme
        url = media_stream_url(settings.public_url, host, scheme)
        with CallLog(settings.call_log_dir, call_sid, metrics.observe) as log:
            log.write(
                "webhook",
                **{"from": params.get("From")},
                to=params.get("To"),
                direction=params.get("Direction"),
                call_status=params.get("CallStatus"),
                stream_url=url,
            )
            if stream_token is None:
                reason = "draining" if registry.draining else "at capacity"
                log.write("call.rejected", reason=reason, twiml="busy")
                return Response(reject("busy"), media_type="application/xml")
        stream_params = {k: params[k] for k in STREAM_PARAMETERS if k in params}
        stream_params["token"] = stream_token
        return Response(connect_stream(url, stream_params), media_type="application/xml")

    @app.websocket(MEDIA_STREAM_PATH)
    async def media_stream(websocket: WebSocket) -> None:
        url = request_url(
            settings.public_url,
            websocket.url.path,
            websocket.url.query,
            websocket.headers,
            websocket.url.scheme,
            websocket=True,
        )
        if not signed(url, {}, websocket.headers.get("x-twilio-signature"), "media stream"):
            await websocket.close(code=1008)  # before accept: the handshake is refused (403)
            return
        await websocket.accept()
        call = MediaStreamCall(
            StarletteTwilioSocket(websocket),
            sessions.open,
            settings.call_log_dir,
            limits,
            admit=admit,
            on_model_failure=apologise,
            features=features,
        )
        task = asyncio.current_task()
        assert task is not None
        registry.sockets[task] = call
        try:
            await call.run()
        finally:
            registry.sockets.pop(task, None)
            registry.release(call.call_sid if call.stream_sid else None)

    @app.post("/call-status")
    async def call_status(params: Annotated[dict[str, str], Depends(twilio_form)]) -> Response:
        """Twilio's status callbacks (initiated, ringing, answered, completed, busy, …)."""
        call_sid = params.get("CallSid", "")
        try:
            safe_call_id(call_sid)
        except ValueError:
            return Response("missing or malformed CallSid", status_code=400)
        with CallLog(settings.call_log_dir, call_sid) as log:
            log.write(
                "call.status",
                status=params.get("CallStatus"),
                direction=params.get("Direction"),
                duration_s=params.get("CallDuration"),
                sequence=params.get("SequenceNumber"),
            )
        return Response(status_code=204)

    def dial_authorized(request: Request) -> None:
        """FastAPI dependency: ``Authorization: Bearer <DIAL_API_TOKEN>``; off when unset."""
        expected = settings.dial_api_token
        if expected is None:
            raise HTTPException(status_code=404, detail="outbound calls are not enabled")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(
            given.encode(), f"Bearer {expected.get_secret_value()}".encode()
        ):
            logger.warning("POST /calls refused: bad or missing bearer token")
            raise HTTPException(status_code=401, detail="bad or missing bearer token")

    @app.post("/calls", status_code=201, dependencies=[Depends(dial_authorized)])
    async def dial(request: Request, body: DialRequest) -> dict[str, str]:
        if rest is None:
            raise HTTPException(503, "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are needed")
        base = settings.public_url or request_url(None, "", "", request.headers, request.url.scheme)
        try:
            call_sid = await place_call(settings, rest, body.to, base)
        except DialError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"call_sid": call_sid}

    sip = (
        SipCalls(
            AsyncOpenAI(
                api_key=settings.openai_api_key.get_secret_value()
                if settings.openai_api_key
                else "unset",
                base_url=settings.openai_base_url,
                webhook_secret=settings.openai_webhook_secret.get_secret_value(),
            ),
            sessions,
            features_for_sip,
            limits,
            settings.call_log_dir,
            registry,
        )
        if settings.openai_webhook_secret
        else None
    )
    app.state.sip = sip

    @app.post("/openai/webhook")
    async def openai_webhook(request: Request) -> Response:
        """OpenAI's ``realtime.call.incoming`` (the SIP path), verified with ``webhooks.unwrap``."""
        if sip is None:
            raise HTTPException(404, "SIP calls are not enabled (OPENAI_WEBHOOK_SECRET)")
        status, body = await sip.webhook(await request.body(), request.headers)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "active_calls": len(registry.calls)}

    @app.get("/readyz")
    async def readyz() -> Response:
        if registry.draining:
            return Response('{"status":"draining"}', 503, media_type="application/json")
        return Response('{"status":"ready"}', media_type="application/json")

    return app
