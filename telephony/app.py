"""The FastAPI app: thin routes that validate, build the object that does the work, and hand over.

- ``POST /incoming-call``: Twilio's Voice webhook -> TwiML ``<Connect><Stream>``.
- ``WS /media-stream``: Twilio Media Streams -> :class:`telephony.call.MediaStreamCall`.
- ``GET /healthz``: liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from agents.realtime import RealtimeAgent
from fastapi import FastAPI, Request, Response, WebSocket
from starlette.websockets import WebSocketState

from .agent import build_default_agent, load_agent
from .call import CallLimits, MediaStreamCall
from .call_log import CallLog, safe_call_id
from .config import Settings, load_settings
from .models import ModelFactory, SessionFactory
from .twiml import MEDIA_STREAM_PATH, connect_stream, media_stream_url

__all__ = ["create_app"]

logger = logging.getLogger("telephony.app")

# Webhook fields passed to the stream as <Parameter>s (they come back in `start`).
STREAM_PARAMETERS = ("CallSid", "From", "To", "Direction")


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
        limits: per-call timeouts.
    """
    settings = settings or load_settings()
    if agent is None:
        agent = load_agent(settings.agent) if settings.agent else build_default_agent()
    sessions = SessionFactory(settings, agent, model_factory)
    active: set[asyncio.Task[Any]] = set()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.openai_api_key is None and model_factory is None:
            logger.warning(
                "OPENAI_API_KEY is not set: calls will be answered but the model cannot connect"
            )
        yield
        for task in list(active):
            task.cancel()
        if active:
            await asyncio.gather(*active, return_exceptions=True)

    app = FastAPI(title="realtime-telephony", lifespan=lifespan)
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.active_calls = active

    @app.post("/incoming-call")
    async def incoming_call(request: Request) -> Response:
        form = await request.form()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        call_sid = params.get("CallSid", "")
        try:
            safe_call_id(call_sid)
        except ValueError:
            logger.warning("webhook without a valid CallSid refused")
            return Response("missing or malformed CallSid", status_code=400)
        host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
        scheme = request.headers.get("x-forwarded-proto") or request.url.scheme
        url = media_stream_url(settings.public_url, host, scheme)
        with CallLog(settings.call_log_dir, call_sid) as log:
            log.write(
                "webhook",
                **{"from": params.get("From")},
                to=params.get("To"),
                direction=params.get("Direction"),
                call_status=params.get("CallStatus"),
                stream_url=url,
            )
        twiml = connect_stream(url, {k: params[k] for k in STREAM_PARAMETERS if k in params})
        return Response(twiml, media_type="application/xml")

    @app.websocket(MEDIA_STREAM_PATH)
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        call = MediaStreamCall(
            StarletteTwilioSocket(websocket), sessions.open, settings.call_log_dir, limits
        )
        task = asyncio.current_task()
        assert task is not None
        active.add(task)
        try:
            await call.run()
        finally:
            active.discard(task)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "active_calls": len(active)}

    return app
