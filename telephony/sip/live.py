"""The SIP path on GPT-Live (``REALTIME_BACKEND=live``): ``live.transport.incoming``, one accept
fleet-wide, and the call run over the sideband.

A Twilio Elastic SIP trunk (with SRTP: GPT-Live requires it) sends the call to OpenAI's SIP
endpoint; OpenAI posts ``live.transport.incoming`` (``session_id``: ``live_…``) and, for the same
pending call, may also post ``realtime.call.incoming`` with another id. The first accept
selects the runtime, so exactly one handler may accept: the configured backend's. On
``live`` that is this module (the ``realtime.call.incoming`` of a call is left unanswered, see
:mod:`.webhook`); the delivery is claimed fleet-wide by its webhook id, its session id and the
SIP ``Call-ID``, then accepted with ``client.live.sessions.accept`` (the agent's session, no
``audio.format``: SIP negotiates it).

:class:`LiveSipCall` attaches to the session over the sideband
(``client.live.sideband.connect``), asks for the greeting, runs the delegate's tools
(:class:`~telephony.agent.live.Delegations`), gives keypad digits to the model
(``transport.dtmf.received`` → a silent note), plays the hold sound while a tool runs
(fixture audio, :mod:`.live_hold`), ends the call politely at ``MAX_CALL_DURATION`` or
``IDLE_TIMEOUT`` (:func:`.call.watch_limits`), logs every event (``live.<type>``) and writes
``call.end`` with the cost. Call control is the shared core with :class:`LiveSipCarrier`:
``hangup`` and ``refer`` of the Live sessions API; the goodbye has been heard when the agent's
speech, reflected on the sideband, has stopped for 0.8 s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from openai import AsyncOpenAI

from ..agent.live import (
    AgentSpeech,
    Delegations,
    LiveBackend,
    LiveSession,
    delegation_update,
    speech_frames,
)
from ..agent.live.events import LiveEvents, Transcript
from ..agent.sessions import GREETING_INSTRUCTIONS
from ..agent.tools import CallContext
from ..config import CallFeatures, CallLimits
from ..control import CallController
from ..observability.call_log import CallLogs, describe_error
from .call import HEADERS_LOGGED, OpenAICallsCarrier, caller_number, watch_limits
from .live_hold import FixtureHold

__all__ = ["LiveSipCall", "LiveSipCarrier"]

logger = logging.getLogger("telephony.sip")
POLL_S = 0.02
REFLECTED_FRAME = 480  # samples in 20 ms of the sideband's reflected audio (pcm16 24 kHz)
ACTIVITY = frozenset(  # events that show the call is alive (IDLE_TIMEOUT counts from them)
    {"session.input_transcript.delta", "session.output_transcript.delta",
     "transport.dtmf.received", "response.event"}
)  # fmt: skip


class LiveSipCarrier(OpenAICallsCarrier):
    """The carrier steps of a SIP call on GPT-Live (:class:`telephony.control.Carrier`):
    ``hangup`` and ``refer`` of the Live sessions API; the goodbye has been heard when the
    agent's speech reflected on the sideband has stopped (:class:`AgentSpeech`)."""

    via = "openai_live_api"

    def __init__(
        self,
        client: AsyncOpenAI,
        session_id: str,
        speech: AgentSpeech,
        record: Callable[..., Any],
    ) -> None:
        super().__init__(client, session_id, speech, record)  # type: ignore[arg-type]
        self._speech = speech

    def _api(self) -> Any:
        return self._client.live.sessions

    async def heard(self, started_before: int, grace_s: float) -> str:
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self._speech.responses_idle_since(started_before):
                return "speech_stopped"
            await asyncio.sleep(POLL_S)
        return "hangup_grace"


class LiveSipCall:
    """One SIP call on GPT-Live, over the sideband. Call :meth:`run` once."""

    backend = "live"

    def __init__(
        self,
        session_id: str,
        sip_headers: Mapping[str, str],
        *,
        live: LiveBackend,
        features: CallFeatures,
        limits: CallLimits,
        logs: CallLogs,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.call_id = session_id
        self._headers = sip_headers
        self._live = live
        self._features = features
        self._limits = limits
        self._log = logs.open(session_id)
        self._extra = extra or {}
        self._started = time.monotonic()
        self._ended = asyncio.Event()
        self._end_reason: str | None = None
        self.speech = AgentSpeech()  # from the output the sideband reflects
        carrier = LiveSipCarrier(live.client, session_id, self.speech, self._log.write)
        record = self._log.write
        speech: Any = self.speech  # what call control reads of a recorder: the responses
        self.control = CallController(features, carrier, record, speech, self.end)
        self.control.call_id = session_id
        self.control.announce_transfers = True  # GPT-Live speaks after a tool's output
        self.control.caller_number = caller_number(sip_headers.get("From", ""))
        transcript = Transcript()
        self.control.transcript = transcript.turns  # the caller's words for a warm handoff
        self.events = LiveEvents(self._log.write, transcript)
        self.session: LiveSession | None = None
        self._delegations: Delegations | None = None
        self.hold: FixtureHold | None = None  # the hold sound while a tool runs (fixtures)
        self._last_activity = time.monotonic()  # for IDLE_TIMEOUT

    def end(self, reason: str) -> None:
        """End our side of the call (after a hang-up or a transfer, or at shutdown)."""
        self._end_reason = self._end_reason or reason
        self._ended.set()

    async def run(self) -> None:
        """Attach, greet, run the events until the call ends; always one ``call.end``."""
        reason = "unknown"
        try:
            self._log.write(
                "sip.incoming",
                **{"from": self._headers.get("From")},
                to=self._headers.get("To"),
                sip_headers={k: v for k, v in self._headers.items() if k in HEADERS_LOGGED},
                backend=self.backend,
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
            await self.control.stop()
            await self._close()
            self._finish(self._end_reason or reason)

    async def _attach_and_run(self) -> str:
        self._log.write("model.connecting", backend=self.backend)
        t0 = time.monotonic()
        context = CallContext(self.call_id, control=self.control)
        try:
            plan = await self._live.plan(context, [])
            session = LiveSession(self._live.client, plan.config, attach=self.call_id)
            async with asyncio.timeout(self._limits.connect_timeout):
                await session.open(self._limits.connect_timeout)
        except Exception as exc:
            self._log.write("model.connect_failed", error=describe_error(exc))
            return "model_connect_failed"
        self.session = self.control.session = session
        session.on_ask = self.speech.asked
        self.events.session_ids.append(self.call_id)
        self.hold = FixtureHold(
            self._features.hold_sound, self._features.hold_delay, session, self._log.write
        )

        async def hand_off(agent: Any) -> Any:  # a handoff: the delegate becomes agent's
            new = await self._live.plan(context, [], agent)
            await session.update_delegation(delegation_update(new))
            return new

        self._delegations = Delegations(plan.tools, context, session.tool_outputs, self._log.write,
                                        on_tool=self.hold.on_tool, handoffs=plan.handoffs,
                                        hand_off=hand_off)  # fmt: skip
        self._log.write(
            "model.connected",
            backend=self.backend,
            session_id=self.call_id,
            connect_ms=round((time.monotonic() - t0) * 1000, 1),
        )
        if self._features.greeting:
            await session.respond(GREETING_INSTRUCTIONS.format(self._features.greeting))
            self._log.write("greeting.requested", text=self._features.greeting)
        events = asyncio.create_task(self._pump(session))
        ended = asyncio.create_task(self._ended.wait())
        limits = asyncio.create_task(self._watch())
        done, _ = await asyncio.wait({events, ended}, return_when=asyncio.FIRST_COMPLETED)
        for task in (events, ended, limits):
            task.cancel()
        await asyncio.gather(events, ended, limits, return_exceptions=True)
        return "call_ended" if events in done else "ended_by_us"

    async def _watch(self) -> None:
        """``MAX_CALL_DURATION`` and ``IDLE_TIMEOUT`` (:func:`.call.watch_limits`); the
        sideband's session cap is not known here (no ``session.started`` on attach)."""
        await watch_limits(
            self.control,
            self._limits,
            self._features.hangup_grace,
            self._started,
            lambda: float("inf"),
            self._busy,
            lambda: self._last_activity,
        )

    def _busy(self) -> bool:
        """The agent speaks, or a tool runs: no time limit cuts in now."""
        tools = self._delegations
        return self.speech.speaking or (tools is not None and not tools.idle)

    async def _pump(self, session: LiveSession) -> None:
        try:
            async for event in session.events():
                kind = event.type
                if kind == "session.output_audio.delta":  # reflected: pcm16 24 kHz
                    pcm24 = base64.b64decode(event.delta)
                    if self.speech.heard(speech_frames(pcm24, REFLECTED_FRAME) > 0):
                        self._last_activity = time.monotonic()
                    continue
                if kind in ACTIVITY:  # either side said something, or a key, or a tool
                    self._last_activity = time.monotonic()
                if kind == "transport.dtmf.received":
                    digit = str(getattr(event, "event", ""))[:8]  # the key, per the types
                    self._log.write("dtmf", digit=digit)
                    await session.send_message(f"The caller pressed this key: {digit}")
                    continue
                self.events.on_event(event)
                if kind == "response.event" and self._delegations is not None:
                    self._delegations.on_response_event(event.delegation_id, event.event)
                elif kind == "session.closed":
                    return
        except Exception as exc:
            self._log.write("model.error", where="sideband", error=describe_error(exc))

    async def _close(self) -> None:
        if self.hold is not None:
            await self.hold.close()
        if self._delegations is not None:
            await self._delegations.close()
            self.events.add_tokens(self._delegations.tokens)
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.abort()  # the sideband only: the call is OpenAI's to end
            self.events.add_usage(self.session.usage)

    def _finish(self, reason: str) -> None:
        duration = time.monotonic() - self._started
        tokens = self.events.tokens
        self._log.write(
            "call.end",
            reason=reason,
            backend=self.backend,
            duration_s=round(duration, 3),
            path="sip",
            model_errors=self.events.errors,
            session_ids=self.events.session_ids,
            **({"hold_pieces": self.hold.pieces} if self.hold and self.hold.pieces else {}),
            tokens=tokens,
            cost_usd=self._features.prices.call_cost(tokens, duration, False),
        )
        self._log.close()
