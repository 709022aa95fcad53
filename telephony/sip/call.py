"""One SIP call's sideband session: greeting, tools, call control and the call log.

The audio goes straight from the SIP trunk to OpenAI; we attach a ``RealtimeSession`` to the
call by its ``call_id`` (the SDK's ``OpenAIRealtimeSIPModel``) and act through the Realtime
Calls API: ``end_call`` → ``calls.hangup``, ``transfer_call`` → ``calls.refer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from openai import AsyncOpenAI, NotFoundError

from ..agent.sessions import announce_transfer, greet, say_goodbye
from ..agent.tools import CallContext, transfer_refusal
from ..config import CallFeatures, CallLimits
from ..observability.call_log import CallLogs, describe_error
from ..observability.recorder import SessionRecorder

__all__ = ["HEADERS_LOGGED", "SipCall", "untrusted"]

logger = logging.getLogger("telephony.sip")

GOODBYE_MARGIN_S = 2.0  # after the goodbye response is done, its audio is still playing
HEADERS_LOGGED = ("From", "To", "Call-ID", "Diversion")


def untrusted(value: str, limit: int = 200) -> str:
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
        logs: CallLogs,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.call_id = call_id
        self._headers = sip_headers
        self._client = client
        self._open_session = open_session
        self._features = features
        self._limits = limits
        self._log = logs.open(call_id)
        self._events = SessionRecorder(self._log.write)
        self._started = time.monotonic()
        self._ended = asyncio.Event()
        self._end_reason: str | None = None
        self._hangup_task: asyncio.Task[None] | None = None
        self._transfer_task: asyncio.Task[None] | None = None
        self._session: Any = None
        self._extra = extra or {}

    async def run(self) -> None:
        """Attach, greet, record events until the call ends; always writes one ``call.end``."""
        reason = "unknown"
        try:
            self._log.write(
                "sip.incoming",
                **{"from": self._headers.get("From")},
                to=self._headers.get("To"),
                sip_headers={k: v for k, v in self._headers.items() if k in HEADERS_LOGGED},
                **self._extra,
            )
            reason = await self._attach_and_run()
        except asyncio.CancelledError:
            reason = "server_shutdown"
            raise
        except Exception as exc:
            logger.exception("SIP call %s: unexpected error", self.call_id)
            self._log.write("error", where="sip", error=describe_error(exc))
            reason = "internal_error"
        finally:
            for task in (self._hangup_task, self._transfer_task):
                if task is not None and not task.done():
                    task.cancel()
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
            async with asyncio.timeout(self._limits.connect_timeout):
                await session.enter()
        except Exception as exc:
            self._log.write("model.connect_failed", error=describe_error(exc))
            return "model_connect_failed"
        self._log.write("model.connected", connect_ms=round((time.monotonic() - t0) * 1000, 1))
        self._session = session
        try:
            if self._features.greeting:
                await greet(session, self._features.greeting)
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
                async with asyncio.timeout(self._limits.close_timeout):
                    await session.close()

    async def _record_events(self, session: Any) -> None:
        try:
            async for event in session:
                self._events.on_event(event)
        except Exception as exc:
            self._log.write("model.error", where="session", error=describe_error(exc))
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

    async def _hang_up_after_goodbye(self, reason: str = "agent_hangup") -> None:
        t0 = time.monotonic()
        await self._goodbye_played(self._events.responses_started)
        try:
            await self._client.realtime.calls.hangup(self.call_id)
            via = "openai_calls_api"
        except NotFoundError:
            via = "openai_calls_api (call already ended)"
        except Exception as exc:
            via = f"failed: {type(exc).__name__}"
        self._log.write("call.hangup", via=via, waited_ms=round((time.monotonic() - t0) * 1000))
        self.end(reason)

    async def _goodbye_played(self, started_before: int) -> None:
        """Wait for a response begun after ``started_before`` responses to be generated, plus a
        margin for OpenAI's real-time playout; at most ``hangup_grace`` seconds in all."""
        t0 = time.monotonic()
        grace = self._features.hangup_grace
        for _ in range(int(grace / 0.02)):  # wait for the goodbye response to be generated
            if self._events.responses_idle_since(started_before):
                break
            await asyncio.sleep(0.02)
        # OpenAI plays the goodbye in real time; it is generated faster, so allow it to finish
        await asyncio.sleep(max(0.0, min(GOODBYE_MARGIN_S, grace - (time.monotonic() - t0))))

    async def operator_hang_up(self, reason: str) -> str:
        """An operator ends the call (from any instance): goodbye, then ``calls.hangup``."""
        if self._hangup_task is not None:
            return "already ending"
        self._log.write("hangup.requested", reason=reason, by="operator")
        self._hangup_task = asyncio.create_task(self._hang_up_after_goodbye("operator_hangup"))
        await self._ask(say_goodbye)
        return "hanging up after the agent's goodbye"

    async def operator_transfer(self, destination: str) -> str:
        """An operator transfers the call: the agent says so, then ``calls.refer``."""
        if destination not in self._features.transfer_targets:
            return transfer_refusal(self._features.transfer_targets, destination)
        if self._transfer_task is not None or self._hangup_task is not None:
            return "already ending"
        self._log.write("transfer.requested", destination=destination, by="operator")
        started_before = self._events.responses_started

        async def announce_then_transfer() -> None:
            await self._goodbye_played(started_before)
            await self.transfer(destination)

        self._transfer_task = asyncio.create_task(announce_then_transfer())
        await self._ask(lambda session: announce_transfer(session, destination))
        return "transferring after the agent's announcement"

    async def _ask(self, say: Callable[[Any], Awaitable[None]]) -> None:
        if self._session is None:
            return
        try:
            await say(self._session)
        except Exception as exc:
            self._log.write("model.error", where="operator", error=describe_error(exc))

    async def transfer(self, destination: str) -> str:
        target = self._features.transfer_targets.get(destination)
        if target is None:
            self._log.write("transfer.refused", destination=str(destination)[:80])
            return transfer_refusal(self._features.transfer_targets, destination)
        uri = target if target.startswith("sip:") else f"tel:{target}"
        try:
            await self._client.realtime.calls.refer(self.call_id, target_uri=uri)
        except Exception as exc:
            self._log.write("twilio.error", action="refer", error=describe_error(exc))
            return "The transfer failed; apologise and offer to help instead."
        self._log.write("call.transfer", destination=destination, target=uri, via="refer")
        self.end("transferred")
        return f"Transferring the caller to {destination} now."
