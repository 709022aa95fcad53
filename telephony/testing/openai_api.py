"""Loopback stand-in for OpenAI's Realtime Calls and Live sessions REST APIs, and a webhook
signer.

Serve :attr:`OpenAIApiStandIn.app` on 127.0.0.1 and set ``OPENAI_BASE_URL`` to ``<url>/v1``. It
records each ``accept``/``reject``/``hangup``/``refer`` (GPT-Live's as ``live.accept``, …); ids
in :attr:`gone` answer 404, as for a caller who already hung up. :func:`signed_webhook` (and
:func:`signed_live_webhook`, :func:`signed_event`) build a delivery signed as OpenAI signs them
(Standard Webhooks: HMAC-SHA256 over ``id.timestamp.body``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

__all__ = ["OpenAIApiStandIn", "signed_event", "signed_live_webhook", "signed_webhook"]


@dataclass
class OpenAIApiStandIn:
    requests: list[tuple[str, str, dict[str, Any]]] = field(
        default_factory=list
    )  # (action, call_id, body)
    gone: set[str] = field(default_factory=set)
    arrived: list[tuple[str, float]] = field(default_factory=list)  # (action, Unix time)
    api_key: str | None = None  # checked by the model resource (None: any)
    models: tuple[str, ...] = (
        "gpt-realtime-2.1",
        "gpt-realtime-2.1-mini",
        "gpt-realtime",
        "gpt-live-1.1",
        "gpt-5.4-mini",
    )

    def of(self, action: str) -> list[tuple[str, dict[str, Any]]]:
        return [(call_id, body) for a, call_id, body in self.requests if a == action]

    def times(self, action: str) -> list[float]:
        """When each ``action`` request arrived (Unix seconds)."""
        return [at for a, at in self.arrived if a == action]

    @property
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models/{model}")
        async def model(model: str, request: Request) -> Response:
            sent = request.headers.get("authorization", "").removeprefix("Bearer ")
            if self.api_key is not None and sent != self.api_key:
                shown = f"{sent[:3]}{'*' * 10}{sent[-4:]}"
                message = f"Incorrect API key provided: {shown}."
                error = {"message": message, "type": "invalid_request_error"}
                return JSONResponse({"error": error}, status_code=401)
            if model not in self.models:
                message = f"The model '{model}' does not exist or you do not have access to it."
                return JSONResponse({"error": {"message": message}}, status_code=404)
            return JSONResponse({"id": model, "object": "model", "owned_by": "system"})

        @app.post("/v1/realtime/calls/{call_id}/{action}")
        async def calls(call_id: str, action: str, request: Request) -> Response:
            raw = await request.body()
            body = json.loads(raw) if raw else {}
            self.requests.append((action, call_id, body))
            self.arrived.append((action, time.time()))
            if call_id in self.gone:
                return JSONResponse(
                    {"error": {"message": "Call not found", "type": "invalid_request_error"}},
                    status_code=404,
                )
            return Response(status_code=200)

        @app.post("/v1/live/sessions/{session_id}/{action}")
        async def live(session_id: str, action: str, request: Request) -> Response:
            raw = await request.body()
            body = json.loads(raw) if raw else {}
            self.requests.append((f"live.{action}", session_id, body))
            self.arrived.append((f"live.{action}", time.time()))
            if session_id in self.gone:
                return JSONResponse(
                    {"error": {"message": "Session not found", "type": "invalid_request_error"}},
                    status_code=404,
                )
            return Response(status_code=200)

        return app


def signed_webhook(
    secret: str,
    call_id: str,
    sip_headers: dict[str, str],
    webhook_id: str | None = None,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A ``realtime.call.incoming`` delivery: ``(body, headers)`` signed with ``secret``
    (``whsec_``-prefixed base64, as OpenAI issues them, or plain text)."""
    headers_in = [{"name": k, "value": v} for k, v in sip_headers.items()]
    data = {"call_id": call_id, "sip_headers": headers_in}
    return signed_event(secret, "realtime.call.incoming", data, webhook_id, timestamp)


def signed_live_webhook(
    secret: str, session_id: str, sip_headers: dict[str, str], webhook_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A ``live.transport.incoming`` delivery (GPT-Live, over SRTP), signed like the other."""
    headers_in = [{"name": k, "value": v} for k, v in sip_headers.items()]
    data = {"session_id": session_id, "type": "sip", "sip_headers": headers_in,
            "sip_media_security": "srtp"}  # fmt: skip
    return signed_event(secret, "live.transport.incoming", data, webhook_id)


def signed_event(
    secret: str,
    event_type: str,
    data: dict[str, Any],
    webhook_id: str | None = None,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A webhook delivery of ``event_type`` with ``data``, signed with ``secret``."""
    webhook_id = webhook_id or "wh_" + secrets.token_hex(8)
    timestamp = timestamp or int(time.time())
    body = json.dumps(
        {
            "object": "event",
            "id": "evt_" + secrets.token_hex(8),
            "type": event_type,
            "created_at": timestamp,
            "data": data,
        }
    ).encode()
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "content-type": "application/json",
    }
    return body, headers
