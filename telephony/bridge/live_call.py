"""One Media Streams call on GPT-Live (``REALTIME_BACKEND=live``): the Twilio socket joined to
a :class:`~telephony.agent.live.LiveSession`, μ-law both ways with no transcoding::

    Twilio ─ media ─▶ InboundAudio.accept ─▶ LiveEchoGate ─▶ session.input_audio.append
    Twilio ◀─ media + mark ── LiveOutbound ◀─ session.output_audio.delta (μ-law)
    delegate's function calls ─▶ Delegations ─▶ one output each + one response.create

Shared with the Realtime bridge (:mod:`.call`): the wait for ``start`` and admission, the call
log, the watchdog, call control (:class:`~.control.MediaCallControl`; the goodbye's playout from
:class:`~.live_audio.LiveOutbound`), the hold sound while a tool runs, warm transfers
(:mod:`.warm`; on hold the model hears silence and what it says is not played,
``held_out_frames``) and recordings (the caller before the echo gate). Not here: barge-in
(GPT-Live decides when to stop; nothing is cleared or truncated) and pre-warming. The agent's
own echo reaches the model as silence (:mod:`.live_echo`). Caller audio goes out only after
``session.started``. A session near its ``expires_at`` is replaced at a quiet moment
(:mod:`.live_renewal`); one that ends under the call (``expired``, a dropped socket) is replaced
at once; each new one is seeded with the transcript, with no second greeting. Server events are
logged as ``live.<type>`` (:mod:`telephony.agent.live.events`); ``call.end`` carries the session
ids, active seconds and the delegate's tokens, priced.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..agent.live import Delegations, LivePlan, LiveSession, delegation_update
from ..agent.live.events import LiveEvents, Transcript
from ..agent.sessions import GREETING_INSTRUCTIONS
from ..agent.tools import CallContext
from ..audio import ULAW_SILENCE
from ..audio.echo import PlayoutReference
from ..config import CallFeatures, CallLimits
from ..observability.call_log import CallLog, CallLogs, describe_error
from ..observability.call_metrics import CallMetrics
from ..twilio.media_stream import Start
from ..twilio.rest import TwilioCalls
from .control import MediaCallControl
from .hold import ToolFiller
from .inbound import InboundAudio
from .live_audio import LiveOutbound
from .live_echo import LiveEchoGate
from .live_renewal import QUIET_FRAMES, LiveRenewal
from .recording import RecordingTap, close_recording, open_recording
from .socket import Admit, TwilioSocket
from .start import StartWait, start_record
from .stream import CallEnded, StreamCall, apologise, reason_of
from .supervisor import POLITE_ENDINGS
from .warm import CallerHold
from .watchdog import CallWatchdog

__all__ = ["LiveMediaCall", "OpenLive"]

logger = logging.getLogger("telephony.bridge")
# (call context, transcript so far, agent or None) -> the session's plan; a session for a plan
PlanSession = Callable[[CallContext, list[tuple[str, str]], Any], Awaitable[LivePlan]]
OpenLive = Callable[[LivePlan], LiveSession]
# a started session not yet given the call: (session, plan, context, connect began)
Successor = tuple[LiveSession, LivePlan, CallContext, float]


class LiveMediaCall(StreamCall):
    """Bridge one Twilio media socket to GPT-Live. Call :meth:`run` once.

    Args:
        socket: the Twilio media socket.
        plan: the session's config for this call's agent (history seeds a renewal).
        open_live: a not-yet-opened :class:`LiveSession` for a plan.
        logs: opens the call's log.
        limits: start, connect, close, idle and duration limits.
        admit: the admission check at ``start``.
        on_model_failure: tells the caller we are ending the call (Twilio REST ``<Say>``).
        features: greeting, keypad, hang-up, transfer, hold sound, prices.
        twilio: REST access to the live call.
        on_frame: called with ``("in" | "out", seconds a frame, frames)`` as frames are processed.
        reconnects: dropped sessions replaced per call, at most (expiries do not count).
        echo_gate: the agent's own echo reaches the model as silence (:mod:`.live_echo`).
    """

    backend = "live"

    def __init__(
        self,
        socket: TwilioSocket,
        plan: PlanSession,
        open_live: OpenLive,
        logs: CallLogs,
        limits: CallLimits | None = None,
        admit: Admit | None = None,
        on_model_failure: Callable[[str, str], Awaitable[str]] | None = None,
        features: CallFeatures | None = None,
        *,
        twilio: TwilioCalls | None = None,
        on_frame: Callable[[str, float, int], None] | None = None,
        reconnects: int = 2,
        echo_gate: bool = True,
    ) -> None:
        self._socket, self._plan, self._open_live, self._logs = socket, plan, open_live, logs
        self._limits = limits or CallLimits()
        self._admit, self._on_model_failure, self._reconnects = admit, on_model_failure, reconnects
        self._features = features = features or CallFeatures()
        self.metrics = CallMetrics(time.monotonic(), on_frame=on_frame)
        self.watchdog = CallWatchdog(self._limits, self._record)
        self._start_wait = StartWait()
        self._log: CallLog | None = None
        self._close_code = 1000
        self.call_sid: str | None = None
        self.stream_sid: str | None = None
        self.caller: str | None = None
        self.end_reason: str | None = None
        self._outbound_call = self.simulated = False
        self.started_at = time.monotonic()
        self.inbound = InboundAudio(self._record, self.metrics, self._limits.audio_ahead)
        self._caller_samples = 0
        self.filler: ToolFiller | None = None
        self.out = LiveOutbound(
            self._send, self._record, self._first_frame_out, self._on_speech, lambda: self.caller_s
        )
        self.echo_gate = LiveEchoGate(self._record) if echo_gate else None
        if self.echo_gate is not None:
            self.out.reference = self.echo_gate.reference
        if features.record and self.out.reference is None:  # the agent as heard, for it
            self.out.reference = PlayoutReference()
        self.recording: RecordingTap | None = None
        out: Any = self.out  # the recorder's responses and the outbound playout, for control
        self.control = MediaCallControl(
            features, twilio, self._record, out, out, self.end, lambda: self.caller_s
        )
        self.route = CallerHold()  # a warm transfer's hold
        self.held_out_frames = 0  # the model's audio not played while the caller held
        self.control.announce_transfers = True  # GPT-Live speaks after a tool's output
        if features.hold_sound:
            self.filler = ToolFiller(
                features.hold_sound,
                features.hold_delay,
                send_media=self.out.send_untracked,
                send=self._send,
                stream_sid=lambda: self.stream_sid,
                idle=lambda: self.out.idle,
                record=self._record,
            )
        self.session: LiveSession | None = None
        self.agent: Any = None  # the agent a handoff moved the call to (None: the service's)
        self._renewal: LiveRenewal[Successor] = LiveRenewal(
            self._limits.renewal_margin,
            self._quiet,
            lambda: sum(len(text) for _, text in self.transcript.turns),
            lambda: self._connect(self.call_sid or ""),
            lambda successor: successor[0].abort(),
            self._record,
        )
        self._attached = asyncio.Event()
        self._delegations: Delegations | None = None
        self.transcript = Transcript()
        self.control.transcript = self.transcript.turns  # (the same list, kept in place)
        self.events = LiveEvents(self._record, self.transcript)
        self.sessions = self.renewals = self.caller_frames_dropped = self.protocol_errors = 0

    async def run(self) -> None:
        """Run the call to its end. Never raises (except cancellation)."""
        try:
            outcome = await self._start_wait.run(
                self._socket, self._limits.start_timeout, self._admit, self
            )
            self.protocol_errors += outcome.bad_frames
            if outcome.start is None:
                self._set_reason(outcome.reason)
                self._close_code = outcome.close_code
                return
            self._on_start(outcome.start, outcome.admitted)
            await self._bridge(outcome.start.call_sid)
        except asyncio.CancelledError:
            self._set_reason("server_shutdown")
            raise
        except Exception as exc:
            logger.exception("call %s: unexpected error", self.call_sid)
            self._record("error", where="bridge", error=describe_error(exc))
            self._set_reason("internal_error")
        finally:
            if self.filler is not None:
                await self.filler.close()
            await self.control.stop()
            if self.session is not None:
                await self._retire(self.session, self._delegations, closing=True)
            await self._renewal.close()  # the sessions a renewal retired
            await self._socket.close(self._close_code)
            self._finish()

    def _on_start(self, start: Start, admitted: dict[str, Any]) -> None:
        self.call_sid = self.control.call_sid = start.call_sid
        self._outbound_call = start.custom_parameters.get("Direction", "").startswith("outbound")
        self.simulated = start.custom_parameters.get("Simulated") == "true"
        self.caller = start.custom_parameters.get("From")
        self.stream_sid = self.inbound.stream_sid = start.stream_sid
        self.out.start(start.stream_sid)
        self.inbound.last_sequence = start.sequence_number
        self.watchdog.start()
        self.metrics.started_at = self.watchdog.started_at
        try:
            self._log = self._logs.open(start.call_sid)
        except ValueError as exc:
            logger.warning("call %r: no call log: %s", start.call_sid[:80], exc)
        if self._features.record and self._log is not None and self.out.reference is not None:
            directory = self._logs.directory
            self.recording = open_recording(
                directory, start.call_sid, self.out.reference, self._record
            )
        fields, unusual = start_record(start)
        self._record("stream.start", **fields, **admitted, backend=self.backend)
        if unusual is not None:
            self._record("protocol.error", error=unusual)
        self.control.start_handoff()  # a SIP call's warm transfer handed off to this call

    async def _bridge(self, call_sid: str) -> None:
        tasks = (
            asyncio.create_task(self._caller_pump(), name=f"caller:{call_sid}"),
            asyncio.create_task(self._watch(), name=f"watchdog:{call_sid}"),
            asyncio.create_task(self._model(call_sid), name=f"model:{call_sid}"),
        )
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, CallEnded):
                raise exc
        reason = next((r for t in done if (r := reason_of(t))), None)
        if reason is None:
            return
        self._set_reason(reason)
        if reason in POLITE_ENDINGS or reason.startswith("model_"):
            timeout = self._limits.close_timeout
            await apologise(self._on_model_failure, call_sid, reason, timeout, self._record)

    async def _model(self, call_sid: str) -> None:
        """Sessions one after another until the call ends: the first greets; one near its
        ``expires_at`` is replaced at a quiet moment (:mod:`.live_renewal`); one that expires
        or drops is replaced, seeded with the transcript (more than ``reconnects`` drops, or a
        close for another reason, end the call with an apology)."""
        drops = 0
        session = self._take(*await self._connect(call_sid))
        await self._greet(session)
        while True:
            self._attached.set()
            why, successor = await self._renewal.serve(self._pump(session), session.expires_at)
            if successor is not None:  # planned: the new session takes the call at once
                old, delegations = session, self._delegations
                session = self._take(*successor)
                self.renewals += 1
                self._record("model.renewed", why="planned", old_session_id=old.id)
                self._renewal.later(self._retire(old, delegations, closing=True))
                continue
            self._attached.clear()
            self.session = self.control.session = None
            await self._retire(session, self._delegations)
            if why == "closed":  # closed by OpenAI for another reason (content, …): no retry
                raise CallEnded("model_closed")
            if why == "dropped":
                drops += 1
                if drops > self._reconnects:
                    raise CallEnded("model_connection_lost")
            self.renewals += 1
            self._record("model.renewing", why=why, history_turns=len(self.transcript.turns))
            session = self._take(*await self._connect(call_sid))

    def _quiet(self) -> bool:
        """A quiet moment to switch sessions: nothing of the agent's playing or to come, no
        tool, transfer or hang-up under way, the caller quiet."""
        tools, inbound = self._delegations, self.inbound
        caller_quiet = inbound.frames_in - inbound.last_loud_frame > QUIET_FRAMES
        busy = self.route.muted or self.control.busy or (tools is not None and not tools.idle)
        return self.out.idle and not busy and caller_quiet

    async def _greet(self, session: LiveSession) -> None:
        """The first session's first words: a person leg's briefing (its opening), nothing on
        a call continuing a handed-off transfer (the caller holds at once), else ``GREETING``."""
        said = self.control.opening()
        greeting = self._features.greeting if said == "" else said or ""
        if greeting:
            await session.respond(GREETING_INSTRUCTIONS.format(greeting))
            self._record("greeting.requested", text=greeting)

    async def _connect(self, call_sid: str) -> Successor:
        """A started session seeded with the transcript (none for the first), not yet given
        the call (:meth:`_take`). Raises CallEnded (``model_connect_failed``)."""
        context = CallContext(call_sid, self.control)
        history = self.transcript.turns if self.sessions else []
        self._record("model.connecting", backend=self.backend, history_turns=len(history))
        t0 = time.monotonic()
        session: LiveSession | None = None
        try:
            plan = await self._plan(context, history, self.agent)
            session = self._open_live(plan)
            await session.open(self._limits.connect_timeout)
        except asyncio.CancelledError:
            if session is not None:
                await session.abort()
            raise
        except Exception as exc:  # LiveSessionError, the client's connection errors, a bug
            self._record("model.error", where="connect", error=describe_error(exc))
            raise CallEnded("model_connect_failed") from exc
        return session, plan, context, t0

    def _take(
        self, session: LiveSession, plan: LivePlan, context: CallContext, t0: float
    ) -> LiveSession:
        """``session`` takes the call: caller audio, events, tools and call control."""
        self.sessions += 1
        session.on_ask = self.out.speech.asked
        self.events.session_ids.append(session.id or "")
        self.session = self.control.session = session
        hand_off = functools.partial(self._hand_off, session, context)
        self._delegations = Delegations(plan.tools, context, session.tool_outputs, self._record,
                                        on_tool=self._on_tool, handoffs=plan.handoffs,
                                        hand_off=hand_off)  # fmt: skip
        self._record(
            "model.connected",
            backend=self.backend,
            session_id=session.id,
            expires_at=session.expires_at,
            connect_ms=round((time.monotonic() - t0) * 1000, 1),
        )
        return session

    async def _hand_off(self, session: LiveSession, context: CallContext, agent: Any) -> LivePlan:
        """A handoff: ``session``'s delegate becomes ``agent``'s (and the next session's)."""
        plan = await self._plan(context, [], agent)
        await session.update_delegation(delegation_update(plan))
        self.agent = agent
        return plan

    async def _pump(self, session: LiveSession) -> str:
        """Server events to the caller, the log and the tool loop, until the session ends;
        returns why: ``expired``, ``dropped`` (or ``connection_lost``) or ``closed`` (any
        other reason, such as ``content``: the call ends, ``model_closed``)."""
        try:
            async for event in session.events():
                kind = event.type
                if kind == "session.output_audio.delta":
                    if self.route.muted:  # the caller holds: the hold sound plays
                        self.held_out_frames += len(event.delta) * 3 // 4 // 160
                        continue
                    t0 = time.perf_counter()  # (for the outbound frame histogram)
                    ulaw = base64.b64decode(event.delta)
                    await self.out.on_delta(ulaw)
                    self.metrics.outbound_processing(time.perf_counter() - t0, len(ulaw) // 160)
                    continue
                self.events.on_event(event)
                if kind == "response.event" and self._delegations is not None:
                    self._delegations.on_response_event(event.delegation_id, event.event)
                elif kind == "session.closed":  # connection_lost: a drop, as a dead socket
                    return {"expired": "expired", "connection_lost": "dropped"}.get(
                        event.reason, "closed"
                    )
        except CallEnded:
            raise
        except Exception as exc:
            self._record("model.error", where="events", error=describe_error(exc))
        return "dropped"

    async def _retire(
        self, session: LiveSession, delegations: Delegations | None, closing: bool = False
    ) -> None:
        """The session is over (``closing``: we ask it to close first): its tools stop, its
        usage and the delegate's tokens are counted."""
        await (session.close(self._limits.close_timeout) if closing else session.abort())
        if delegations is not None:
            await delegations.close()
            self.events.add_tokens(delegations.tokens)
        if delegations is self._delegations:
            self._delegations = None
        self.events.add_usage(session.usage)
        self._record("model.closed", session_id=session.id, reason=session.closed_reason)

    def _on_tool(self, phase: str, tool: Any) -> None:
        if self.filler is not None:
            (self.filler.tool_started if phase == "start" else self.filler.tool_ended)(tool)

    async def _on_speech(self) -> None:
        if self.filler is not None:
            await self.filler.reply_starts()

    async def _caller_pump(self) -> None:
        await self._attached.wait()  # until session.started, frames wait in the socket
        await self._read_caller()

    async def _caller_media(self, ulaw: bytes, now: float, t0: float) -> None:
        if not self.inbound.accept(ulaw, now):
            self._dropped()
            return
        if self.recording is not None:
            self.recording.frame(ulaw, self.caller_s)
        if self.echo_gate is not None:
            ulaw = self.echo_gate.frame(ulaw, self.caller_s)
        if self.route.muted:  # a warm transfer's hold: the model hears silence
            ulaw = bytes([ULAW_SILENCE]) * len(ulaw)
        session = self.session
        if session is None or not self._attached.is_set():  # between sessions
            self.caller_frames_dropped += 1
            return
        try:
            await session.append_audio(ulaw)
            self.metrics.inbound_processing(time.perf_counter() - t0)
        except Exception as exc:  # the model pump sees the socket go and renews
            self.caller_frames_dropped += 1
            if self.caller_frames_dropped == 1:
                self._record("model.error", where="append", error=describe_error(exc))

    def _finish(self) -> None:
        reason = self.end_reason or "unknown"
        duration = time.monotonic() - self.started_at
        tokens = self.events.tokens
        totals = {
            "reason": reason,
            "backend": self.backend,
            "duration_s": round(duration, 3),
            "stream_sid": self.stream_sid,
            **self.inbound.totals(),
            **self.out.totals(),
            "caller_frames_dropped": self.caller_frames_dropped,
            **({"held_out_frames": self.held_out_frames} if self.held_out_frames else {}),
            "protocol_errors": self.protocol_errors + self.inbound.protocol_errors,
            "model_errors": self.events.errors,
            "sessions": self.sessions,
            "renewals": self.renewals,
            "session_ids": self.events.session_ids,
            **(self.echo_gate.totals() if self.echo_gate is not None else {}),
            "usage": {"live_seconds": tokens.get("live_seconds", 0.0)},
            "tokens": tokens,
            "cost_usd": self._features.prices.call_cost(
                tokens, 0.0 if self.simulated else duration, self._outbound_call
            ),
            **({"simulated": True} if self.simulated else {}),
        }
        close_recording(self.recording, totals)
        self._record("call.end", **totals)
        logger.info("call %s ended: %s", self.call_sid, reason)
        with contextlib.suppress(Exception):
            if self._log is not None:
                self._log.close()
