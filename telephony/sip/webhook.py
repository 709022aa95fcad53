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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from openai import AsyncOpenAI, InvalidWebhookSignatureError, NotFoundError
from openai.types.webhooks import (
    LiveTransportIncomingWebhookEvent,
    RealtimeCallIncomingWebhookEvent,
)

from ..admission import CallRegistry
from ..agent.briefing import Briefing
from ..agent.live import LiveBackend
from ..agent.sessions import SessionFactory
from ..agent.tools import CallContext
from ..config import CallFeatures, CallLimits
from ..observability.call_log import CallLogs, describe_error
from ..observability.ratelimit import LogLimiter
from .call import SipCall, untrusted
from .ids import is_sip_call_id
from .live import LiveSipCall
from .live_webhook import live_incoming

__all__ = ["SipCalls"]

logger = logging.getLogger("telephony.sip")

Refer = Callable[[str, str], Awaitable[dict[str, Any] | str]]  # (destination, uri)
# (briefing, refer) -> call.transfer's fields, or a note for the model
HandOff = Callable[[Briefing, Refer], Awaitable[dict[str, Any] | str]]
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
        logs: CallLogs,
        registry: CallRegistry,
    ) -> None:
        self.client = client
        self._sessions = sessions
        self._features = features
        self._limits = limits
        self._logs = logs
        self._registry = registry
        self._refusals = LogLimiter(logger)
        self._seen: dict[str, float] = {}  # webhook-id or call_id -> when
        self.tasks: set[asyncio.Task[None]] = set()
        # a warm transfer handed off to a Twilio call (``SIP_TRANSFER_DOMAIN``): stores the
        # briefing, then refers the call by the given ``refer(destination, uri)``
        self.hand_off: HandOff | None = None
        self.live: LiveBackend | None = None  # REALTIME_BACKEND=live: GPT-Live answers
        self.untrusted = untrusted

    async def _duplicate(self, *keys: str) -> bool:
        """Whether a delivery was seen before, here or (in a fleet) on any instance."""
        now = time.monotonic()
        self._seen = {k: t for k, t in self._seen.items() if now - t < SEEN_TTL_S}
        if any(k in self._seen for k in keys):
            return True
        for key in keys:
            self._seen[key] = now
        expires_at = time.time() + SEEN_TTL_S
        for key in keys:
            if not await self._registry.claim_once(key, expires_at):
                return True
        return False

    async def _forget(self, *keys: str) -> None:
        for key in keys:
            self._seen.pop(key, None)
            await self._registry.unclaim(key)

    async def webhook(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, str]]:
        """One delivery; returns ``(HTTP status, JSON body)``: 400 when the signature is bad,
        200 for everything OpenAI should not retry."""
        try:
            event = self.client.webhooks.unwrap(body, headers)
        except InvalidWebhookSignatureError as exc:
            self._refusals.warning("signature", "OpenAI webhook refused: %s", exc)
            return 400, {"error": "invalid webhook signature"}
        except Exception as exc:  # signed by OpenAI, but not an event we can read
            self._refusals.warning("malformed", "OpenAI webhook refused: %s", type(exc).__name__)
            return 400, {"error": "malformed webhook event"}
        if isinstance(event, LiveTransportIncomingWebhookEvent):
            if self.live is None:  # the Realtime backend accepts this call's other webhook
                return 200, {"status": "ignored: REALTIME_BACKEND is not live"}
            return await live_incoming(self, event, headers)
        if not isinstance(event, RealtimeCallIncomingWebhookEvent):
            return 200, {"status": "ignored"}
        if self.live is not None:  # exactly one accept: GPT-Live's, by its own webhook
            logger.info("SIP call: realtime.call.incoming left to live.transport.incoming")
            return 200, {"status": "ignored: REALTIME_BACKEND=live"}
        call_id = getattr(getattr(event, "data", None), "call_id", None)
        if not is_sip_call_id(call_id):
            self._refusals.warning("call_id", "OpenAI webhook ignored: malformed call_id")
            return 200, {"status": "ignored: malformed call_id"}
        assert isinstance(call_id, str)
        try:
            headers_in = event.data.sip_headers
            sip_headers = {untrusted(h.name, 64): untrusted(h.value) for h in headers_in}
        except (AttributeError, TypeError):
            return 400, {"error": "malformed webhook event"}
        keys = (f"sip:webhook:{headers.get('webhook-id', event.id)}", f"sip:call:{call_id}")
        if await self._duplicate(*keys):
            logger.info("SIP call %s: duplicate delivery ignored", call_id)
            return 200, {"status": "duplicate"}
        admission = await self._registry.admit_sip(call_id)
        if admission.reason:
            with self._logs.open(call_id, observe=False) as log:
                log.write("call.rejected", reason=admission.reason, sip_status=BUSY_HERE)
            with contextlib.suppress(Exception):
                await self.client.realtime.calls.reject(call_id, status_code=BUSY_HERE)
            return 200, {"status": "rejected"}
        refused = await self._accept(call_id)
        if refused is not None:
            await self._registry.release(call_id)
            await self._forget(*keys)  # a redelivery may try again
            return 200, {"status": refused}
        extra = {"degraded": True} if admission.degraded else {}
        self._start(call_id, sip_headers, extra)
        return 200, {"status": "accepted"}

    async def _accept(self, call_id: str) -> str | None:
        """``calls.accept`` with the agent's session; None when accepted, else why not."""
        try:
            payload = await self._sessions.sip_accept_payload(CallContext(call_id))
            await self.client.realtime.calls.accept(call_id, **payload)
        except NotFoundError:
            with self._logs.open(call_id, observe=False) as log:
                log.write("call.accept_failed", error="404: the caller already hung up")
            return "caller gone"
        except Exception as exc:
            logger.warning("SIP call %s: accept failed: %s", call_id, exc)
            with self._logs.open(call_id, observe=False) as log:
                log.write("call.accept_failed", error=describe_error(exc))
            return "accept failed"
        return None

    def _start(
        self, call_id: str, sip_headers: dict[str, str], extra: dict[str, Any], live: bool = False
    ) -> None:
        """Run the accepted call's sideband session in a task that draining can end."""
        if live:
            assert self.live is not None
            call: Any = LiveSipCall(call_id, sip_headers, live=self.live, features=self._features,
                                    limits=self._limits, logs=self._logs, extra=extra)  # fmt: skip
            self._run(call_id, call)
            return
        call = SipCall(
            call_id,
            sip_headers,
            client=self.client,
            open_session=self._sessions.open_sip,
            features=self._features,
            limits=self._limits,
            logs=self._logs,
            extra=extra,
        )
        hand_off = self.hand_off
        if hand_off is not None:
            transfer = call.control.carrier.transfer
            call.control.warm_handoff = lambda briefing: hand_off(briefing, transfer)
        self._run(call_id, call)

    def _run(self, call_id: str, call: Any) -> None:
        registry = self._registry

        async def run() -> None:
            try:
                await call.run()
            finally:
                registry.sockets.pop(task, None)
                await registry.release(call_id)

        task = asyncio.create_task(run(), name=f"sip:{call_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        registry.sockets[task] = call  # drained on shutdown like any call
        registry.live[call_id] = call  # reachable by remote call control

    async def shutdown(self) -> None:
        """Cancel and await every SIP call task (each writes its ``call.end``)."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
