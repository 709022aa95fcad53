"""The SIP path: Twilio Elastic SIP trunk → OpenAI SIP → our webhook → accept → RealtimeSession.

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
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI, InvalidWebhookSignatureError, NotFoundError
from openai.types.webhooks import RealtimeCallIncomingWebhookEvent

from .call import GREETING_INSTRUCTIONS, CallFeatures, CallLimits
from .call_control import CallContext
from .call_log import CallLog, safe_call_id
from .models import SessionFactory, create_response
from .registry import CallRegistry
from .session_log import SessionRecorder

__all__ = ["SipCall", "SipCalls"]

logger = logging.getLogger("telephony.sip")

BUSY_HERE = 486  # SIP status for "at capacity"
GOODBYE_MARGIN_S = 2.0  # after the goodbye response is done, its audio is still playing
SEEN_TTL_S = 600.0
HEADERS_LOGGED = ("From", "To", "Call-ID", "Diversion")


def _untrusted(value: str, limit: int = 200) -> str:
    """SIP header text comes from the caller's side: printable characters only, bounded."""
    return "".join(ch for ch in value if ch.isprintable())[:limit]


class SipCall:
    """One SIP call's sideband session: greeting, tools, call control and the call log.

    Implements :class:`telephony.call_control.CallControl`. Call :meth:`run` once.
    """

    def __init__(
        self,
        call_id: str,
        sip_headers: Mapping[str, str],
        *,
        client: AsyncOpenAI,
        open_session: Callable[[CallContext], Awaitable[Any]],
        features: CallFeatures,
        limits: CallLimits,
        log_dir: Path,
    ) -> None:
        self.call_id = call_id
        self._headers = sip_headers
        self._client = client
        self._open_session = open_session
        self._features = features
        self._limits = limits
        self._log = CallLog(log_dir, call_id, features.observer)
        self._events = SessionRecorder(self._log.write)
        self._started = time.monotonic()
        self._ended = asyncio.Event()
        self._end_reason: str | None = None
        self._hangup_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Attach, greet, record events until the call ends; always writes one ``call.end``."""
        reason = "unknown"
        try:
            self._log.write(
                "sip.incoming",
                **{"from": self._headers.get("From")},
                to=self._headers.get("To"),
                sip_headers={k: v for k, v in self._headers.items() if k in HEADERS_LOGGED},
            )
            reason = await self._attach_and_run()
        except asyncio.CancelledError:
            reason = "server_shutdown"
            raise
        except Exception as exc:
            logger.exception("SIP call %s: unexpected error", self.call_id)
            self._log.write("error", where="sip", error=f"{type(exc).__name__}: {exc}"[:300])
            reason = "internal_error"
        finally:
            if self._hangup_task is not None and not self._hangup_task.done():
                self._hangup_task.cancel()
            self._log.write(
                "call.end",
                reason=self._end_reason or reason,
                duration_s=round(time.monotonic() - self._started, 3),
                path="sip",
                model_errors=self._events.model_errors,
            )
            self._log.close()

    async def _attach_and_run(self) -> str:
        self._log.write("model.connecting")
        t0 = time.monotonic()
        try:
            session = await self._open_session(CallContext(self.call_id, control=self))
            await asyncio.wait_for(session.enter(), self._limits.connect_timeout)
        except Exception as exc:
            self._log.write("model.connect_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return "model_connect_failed"
        self._log.write("model.connected", connect_ms=round((time.monotonic() - t0) * 1000, 1))
        try:
            if self._features.greeting:
                await create_response(
                    session, GREETING_INSTRUCTIONS.format(self._features.greeting)
                )
                self._log.write("greeting.requested", text=self._features.greeting)
            events = asyncio.create_task(self._record_events(session))
            ended = asyncio.create_task(self._ended.wait())
            done, _ = await asyncio.wait({events, ended}, return_when=asyncio.FIRST_COMPLETED)
            for task in (events, ended):
                task.cancel()
            await asyncio.gather(events, ended, return_exceptions=True)
            if events in done and not events.cancelled() and events.exception() is not None:
                return "model_error"
            return "call_ended" if events in done else "ended_by_us"
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(), self._limits.close_timeout)

    async def _record_events(self, session: Any) -> None:
        try:
            async for event in session:
                self._events.on_event(event)
        except Exception as exc:
            self._log.write(
                "model.error", where="session", error=f"{type(exc).__name__}: {exc}"[:300]
            )
            raise

    def end(self, reason: str) -> None:
        """End our side of the call (after hang-up, transfer, or shutdown)."""
        self._end_reason = self._end_reason or reason
        self._ended.set()

    # ---------------------------------------------------------------- CallControl

    async def hang_up(self, reason: str) -> str:
        if self._hangup_task is not None:
            return "The call is already ending."
        self._log.write("hangup.requested", reason=reason)
        self._hangup_task = asyncio.create_task(self._hang_up_after_goodbye())
        return "The call will end as soon as your goodbye has played. Say a short goodbye now."

    async def _hang_up_after_goodbye(self) -> None:
        started_before = self._events.responses_started
        t0 = time.monotonic()
        grace = self._features.hangup_grace
        for _ in range(int(grace / 0.02)):  # wait for the goodbye response to be generated
            if self._events.responses_idle_since(started_before):
                break
            await asyncio.sleep(0.02)
        # OpenAI plays the goodbye in real time; it is generated faster, so allow it to finish
        await asyncio.sleep(max(0.0, min(GOODBYE_MARGIN_S, grace - (time.monotonic() - t0))))
        try:
            await self._client.realtime.calls.hangup(self.call_id)
            via = "openai_calls_api"
        except NotFoundError:
            via = "openai_calls_api (call already ended)"
        except Exception as exc:
            via = f"failed: {type(exc).__name__}"
        self._log.write("call.hangup", via=via, waited_ms=round((time.monotonic() - t0) * 1000))
        self.end("agent_hangup")

    async def transfer(self, destination: str) -> str:
        target = self._features.transfer_targets.get(destination)
        if target is None:
            allowed = ", ".join(sorted(self._features.transfer_targets)) or "none"
            self._log.write("transfer.refused", destination=str(destination)[:80])
            return f"Cannot transfer to {destination!r}. Allowed destinations: {allowed}."
        uri = target if target.startswith("sip:") else f"tel:{target}"
        try:
            await self._client.realtime.calls.refer(self.call_id, target_uri=uri)
        except Exception as exc:
            self._log.write(
                "twilio.error", action="refer", error=f"{type(exc).__name__}: {exc}"[:300]
            )
            return "The transfer failed; apologise and offer to help instead."
        self._log.write("call.transfer", destination=destination, target=uri, via="refer")
        self.end("transferred")
        return f"Transferring the caller to {destination} now."


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
    ) -> None:
        self.client = client
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
        sip_headers = {_untrusted(h.name, 64): _untrusted(h.value) for h in event.data.sip_headers}
        if not self._registry.admit_sip(call_id):
            with CallLog(self._log_dir, call_id) as log:
                log.write("call.rejected", reason="at capacity", sip_status=BUSY_HERE)
            with contextlib.suppress(Exception):
                await self.client.realtime.calls.reject(call_id, status_code=BUSY_HERE)
            return 200, {"status": "rejected"}
        context = CallContext(call_id)
        try:
            payload = await self._sessions.sip_accept_payload(context)
            await self.client.realtime.calls.accept(call_id, **payload)
        except NotFoundError:
            self._registry.release(call_id)
            with CallLog(self._log_dir, call_id) as log:
                log.write("call.accept_failed", error="404: the caller already hung up")
            return 200, {"status": "caller gone"}
        except Exception as exc:
            self._registry.release(call_id)
            logger.warning("SIP call %s: accept failed: %s", call_id, exc)
            with CallLog(self._log_dir, call_id) as log:
                log.write("call.accept_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return 200, {"status": "accept failed"}
        call = SipCall(
            call_id,
            sip_headers,
            client=self.client,
            open_session=self._sessions.open_sip,
            features=self._features,
            limits=self._limits,
            log_dir=self._log_dir,
        )
        task = asyncio.create_task(call.run(), name=f"sip:{call_id}")
        self.tasks.add(task)
        self._registry.sockets[task] = call  # drained on shutdown like any call

        def finished(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            self._registry.sockets.pop(task, None)
            self._registry.release(call_id)

        task.add_done_callback(finished)
        return 200, {"status": "accepted"}

    async def shutdown(self) -> None:
        """Cancel and await every SIP call task (each writes its ``call.end``)."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
