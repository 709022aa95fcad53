"""OpenAI's ``realtime.call.incoming`` webhook: verify, dedupe, admit, accept, attach.

A Twilio Elastic SIP trunk sends the call to ``sip:<project_id>@sip.api.openai.com;transport=tls``.
OpenAI posts ``realtime.call.incoming`` to ``/openai/webhook``. We verify it with the openai
client's ``webhooks.unwrap`` (Standard Webhooks HMAC, ``OPENAI_WEBHOOK_SECRET``), accept the call
with the session configuration of the same agent (``calls.accept``), and attach a
``RealtimeSession`` by ``call_id`` with the SDK's ``OpenAIRealtimeSIPModel``. The audio never
passes through us; the agent, its tools, the greeting and the call log are the same as on the
Media Streams path. Call control goes through the Realtime Calls API: ``end_call`` →
``calls.hangup``, ``transfer_call`` → ``calls.refer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI, InvalidWebhookSignatureError, NotFoundError
from openai.types.webhooks import RealtimeCallIncomingWebhookEvent

from ..admission import CallRegistry
from ..agent.sessions import SessionFactory
from ..agent.tools import CallContext
from ..config import CallFeatures, CallLimits
from ..observability.call_log import CallLog, describe_error, safe_call_id
from .call import SipCall, untrusted

__all__ = ["SipCalls"]

logger = logging.getLogger("telephony.sip")

BUSY_HERE = 486  # SIP status for "at capacity"
SEEN_TTL_S = 600.0


class SipCalls:
    """Handles OpenAI's ``realtime.call.incoming`` webhooks and owns the SIP calls' tasks.

    Args:
        client: the openai client (its ``webhook_secret`` verifies deliveries).
        sessions: builds the accept payload and the attached sessions from the agent.
        registry: capacity and draining, shared with the Media Streams path.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        sessions: SessionFactory,
        features: CallFeatures,
        limits: CallLimits,
        log_dir: Path,
        registry: CallRegistry,
        observer: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.client = client
        self._observer = observer
        self._sessions = sessions
        self._features = features
        self._limits = limits
        self._log_dir = log_dir
        self._registry = registry
        self._seen: dict[str, float] = {}  # webhook-id or call_id -> when
        self.tasks: set[asyncio.Task[None]] = set()

    def _duplicate(self, *keys: str) -> bool:
        now = time.monotonic()
        self._seen = {k: t for k, t in self._seen.items() if now - t < SEEN_TTL_S}
        if any(k in self._seen for k in keys):
            return True
        for key in keys:
            self._seen[key] = now
        return False

    async def webhook(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, str]]:
        """One delivery; returns ``(HTTP status, JSON body)``: 400 when the signature is bad,
        200 for everything OpenAI should not retry."""
        try:
            event = self.client.webhooks.unwrap(body, headers)
        except (InvalidWebhookSignatureError, ValueError) as exc:
            logger.warning("OpenAI webhook refused: %s", exc)
            return 400, {"error": "invalid webhook signature"}
        if not isinstance(event, RealtimeCallIncomingWebhookEvent):
            return 200, {"status": "ignored"}
        call_id = event.data.call_id
        try:
            safe_call_id(call_id)
        except ValueError:
            return 200, {"status": "ignored: unusable call_id"}
        if self._duplicate(f"webhook:{headers.get('webhook-id', event.id)}", f"call:{call_id}"):
            logger.info("SIP call %s: duplicate delivery ignored", call_id)
            return 200, {"status": "duplicate"}
        sip_headers = {untrusted(h.name, 64): untrusted(h.value) for h in event.data.sip_headers}
        if not self._registry.admit_sip(call_id):
            with CallLog(self._log_dir, call_id) as log:
                log.write("call.rejected", reason="at capacity", sip_status=BUSY_HERE)
            with contextlib.suppress(Exception):
                await self.client.realtime.calls.reject(call_id, status_code=BUSY_HERE)
            return 200, {"status": "rejected"}
        refused = await self._accept(call_id)
        if refused is not None:
            self._registry.release(call_id)
            return 200, {"status": refused}
        self._start(call_id, sip_headers)
        return 200, {"status": "accepted"}

    async def _accept(self, call_id: str) -> str | None:
        """``calls.accept`` with the agent's session; None when accepted, else why not."""
        try:
            payload = await self._sessions.sip_accept_payload(CallContext(call_id))
            await self.client.realtime.calls.accept(call_id, **payload)
        except NotFoundError:
            with CallLog(self._log_dir, call_id) as log:
                log.write("call.accept_failed", error="404: the caller already hung up")
            return "caller gone"
        except Exception as exc:
            logger.warning("SIP call %s: accept failed: %s", call_id, exc)
            with CallLog(self._log_dir, call_id) as log:
                log.write("call.accept_failed", error=describe_error(exc))
            return "accept failed"
        return None

    def _start(self, call_id: str, sip_headers: dict[str, str]) -> None:
        """Run the accepted call's sideband session in a task that draining can end."""
        call = SipCall(
            call_id,
            sip_headers,
            client=self.client,
            open_session=self._sessions.open_sip,
            features=self._features,
            limits=self._limits,
            log_dir=self._log_dir,
            observer=self._observer,
        )
        task = asyncio.create_task(call.run(), name=f"sip:{call_id}")
        self.tasks.add(task)
        self._registry.sockets[task] = call  # drained on shutdown like any call

        def finished(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            self._registry.sockets.pop(task, None)
            self._registry.release(call_id)

        task.add_done_callback(finished)

    async def shutdown(self) -> None:
        """Cancel and await every SIP call task (each writes its ``call.end``)."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
