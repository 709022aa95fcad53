"""One call's lifetime: one Twilio Media Streams socket joined to one ``RealtimeSession``.

Data flow for one call::

    Twilio ─ media (μ-law 8 kHz) ─▶ InboundAudio ─ pcm16 24 kHz ─▶ session.send_audio
    Twilio ◀─ media/mark/clear ─── OutboundAudio ◀─ pcm16 24 kHz ─ session audio events
            mark echoes ─▶ Playback ─▶ PhonePlaybackTracker (barge-in truncation)

:class:`MediaStreamCall` waits for ``start``, lets the :class:`~.supervisor.SessionSupervisor`
open the session, runs the two pumps (caller -> model, model -> caller) and a watchdog until
something ends the call, closes everything it opened with a bounded timeout, and writes exactly
one ``call.end`` record however the call ends. Inbound checks and transcoding are
:mod:`.inbound`; outbound audio :mod:`.outbound`; DTMF, hang-up and transfer :mod:`.control`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents.realtime import RealtimeSession

from ..agent.sessions import server_event
from ..audio.clips import apology
from ..audio.echo import PlayoutReference
from ..config import CallFeatures, CallLimits
from ..observability.call_log import CallLog, CallLogs, describe_error
from ..observability.call_metrics import CallMetrics
from ..observability.recorder import SessionRecorder
from ..twilio.media_stream import (
    Start,
)
from ..twilio.rest import TwilioCalls
from .barge_in import BargeInGuard, SessionActions
from .control import MediaCallControl
from .hold import ToolFiller
from .inbound import InboundAudio
from .outbound import OutboundAudio
from .recording import RecordingTap, close_recording, open_recording
from .routing import CallerAudioRoute
from .socket import Admit, TwilioSocket
from .start import StartWait, start_record
from .stream import CallEnded, StreamCall, reason_of
from .supervisor import POLITE_ENDINGS, OpenSession, SessionSupervisor, TakePrewarmed
from .watchdog import CallWatchdog

__all__ = ["Admit", "MediaStreamCall", "TwilioSocket"]

logger = logging.getLogger("telephony.bridge")


class MediaStreamCall(StreamCall):
    """Bridge one Twilio media socket to one realtime session. Call :meth:`run` once.

    Args:
        socket: the Twilio media socket.
        open_session: builds the model session for the call.
        logs: opens the call's log.
        limits: start, connect, close, idle and duration limits.
        admit: the admission check at ``start`` (stream token, capacity).
        on_model_failure: tells the caller we are ending the call; see the supervisor.
        reconnects: how many times a failed model session is replaced.
        features: greeting, DTMF, hang-up and transfer behaviour.
        twilio: REST access to the live call (hang up, transfer); None closes the stream.
        on_frame: called with ``("in" | "out", seconds a frame, frames)`` as 20 ms frames are
            processed.
        backend: which model answers, for the call log.
        prewarmed: ``call_sid -> Prewarmed | None``: the session opened at the webhook.
    """

    def __init__(
        self,
        socket: TwilioSocket,
        open_session: OpenSession,
        logs: CallLogs,
        limits: CallLimits | None = None,
        admit: Admit | None = None,
        on_model_failure: Callable[[str, str], Awaitable[str]] | None = None,
        reconnects: int = 1,
        features: CallFeatures | None = None,
        *,
        twilio: TwilioCalls | None = None,
        on_frame: Callable[[str, float, int], None] | None = None,
        backend: str = "openai",
        prewarmed: TakePrewarmed | None = None,
    ) -> None:
        self._socket = socket
        self._logs = logs
        self._limits = limits or CallLimits()
        self._admit = admit
        features = features or CallFeatures()
        self.metrics = CallMetrics(time.monotonic(), on_frame=on_frame)
        self._recorder = SessionRecorder(self._record, on_vad=self._on_vad, prices=features.prices)
        self._outbound_call = False  # Twilio's Direction says outbound-api (carrier pricing)
        self.simulated = False  # a local simulated or browser call: no carrier to pay
        self.watchdog = CallWatchdog(self._limits, self._record)
        self._close_code = 1000
        self._start_wait = StartWait()
        self._log: CallLog | None = None
        self.call_sid: str | None = None
        self.stream_sid: str | None = None
        self.end_reason: str | None = None
        self._started_at = self.started_at = time.monotonic()
        self.caller: str | None = None
        self.inbound = InboundAudio(self._record, self.metrics, self._limits.audio_ahead)
        # the caller's audio clock (seconds received; Twilio sends frames in order with the
        # mark echoes): the echo reference and the recording place the agent's playout on it
        self._caller_samples = 0
        self.out = OutboundAudio(
            self._send,
            self._record,
            self.metrics,
            self._first_frame_out,
            clock=lambda: self.caller_s,
        )
        control = (features, twilio, self._record, self._recorder, self.out, self.end)
        self.control = MediaCallControl(*control, clock=lambda: self.caller_s)
        self._supervisor = SessionSupervisor(
            open_session,
            self._limits,
            self._record,
            self._recorder,
            self.out,
            self.control,
            greeting=features.greeting,
            backend=backend,
            reconnects=reconnects,
            on_model_failure=on_model_failure,
            prewarmed=prewarmed,
        )
        self.route = CallerAudioRoute(self._record, self._on_attach)
        self.guard: BargeInGuard | None = None
        if features.barge_in is not None:
            actions = SessionActions(self.out, lambda: self.route.target, self._record)
            self.guard = BargeInGuard(
                features.barge_in,
                actions,
                audible=lambda: self.out.playing or self.out.paused,
                agent_words=self._recorder.agent_words,
                record=self._record,
            )
            self.out.reference = self.guard.reference
        self._record_calls = features.record
        if self._record_calls and self.out.reference is None:  # the agent as heard, for it
            self.out.reference = PlayoutReference()
        self.recording: RecordingTap | None = None
        self.filler: ToolFiller | None = None
        if features.hold_sound:  # tools' hold (after hold_delay), a warm transfer's hold
            self.filler = ToolFiller(
                features.hold_sound,
                features.hold_delay,
                send_media=self.out.send_untracked,
                send=self._send,
                stream_sid=lambda: self.stream_sid,
                idle=lambda: self.out.idle,
                record=self._record,
            )
        self.protocol_errors = 0

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run the call to its end. Never raises (except cancellation)."""
        try:
            start = await self._await_start()
            if start is None:
                return
            await self._bridge(start.call_sid)
        except asyncio.CancelledError:
            self._set_reason("server_shutdown")
            raise
        except Exception as exc:  # a bug of ours must still end the call cleanly
            logger.exception("call %s: unexpected error", self.call_sid)
            self._record("error", where="bridge", error=describe_error(exc))
            self._set_reason("internal_error")
        finally:
            if self.guard is not None:
                await self.guard.close()
            if self.filler is not None:
                await self.filler.close()
            await self.control.stop()
            await self._socket.close(self._close_code)
            self._finish()

    async def _await_start(self) -> Start | None:
        """Read ``connected`` then ``start`` and admit it; None when the stream is refused or
        never starts (the reason and the close code are set)."""
        outcome = await self._start_wait.run(
            self._socket, self._limits.start_timeout, self._admit, self
        )
        self.protocol_errors += outcome.bad_frames
        if outcome.start is None:
            self._set_reason(outcome.reason)
            self._close_code = outcome.close_code
            return None
        self._on_start(outcome.start, outcome.admitted)
        return outcome.start

    def _on_start(self, start: Start, admitted: dict[str, Any]) -> None:
        self.call_sid = self.control.call_sid = start.call_sid
        self._outbound_call = start.custom_parameters.get("Direction", "").startswith("outbound")
        self.simulated = start.custom_parameters.get("Simulated") == "true"
        self.caller = start.custom_parameters.get("From")  # for the console's live list
        self.stream_sid = self.out.stream_sid = self.inbound.stream_sid = start.stream_sid
        self.inbound.last_sequence = start.sequence_number
        self.watchdog.start()
        self.metrics.started_at = self.watchdog.started_at
        try:
            self._log = self._logs.open(start.call_sid)
        except ValueError as exc:
            logger.warning("call %r: no call log: %s", start.call_sid[:80], exc)
        if self._record_calls and self._log is not None and self.out.reference is not None:
            directory = self._logs.directory
            self.recording = open_recording(
                directory, start.call_sid, self.out.reference, self._record
            )
        fields, unusual = start_record(start)
        self._record("stream.start", **fields, **admitted)
        if unusual is not None:
            self._record("protocol.error", error=unusual)
        self.control.start_handoff()  # a SIP call's warm transfer handed off to this call

    async def _bridge(self, call_sid: str) -> None:
        """The caller pump and the watchdog for the whole call, and the model sessions under the
        supervisor, until one of them ends the call."""
        caller = asyncio.create_task(self._caller_pump(), name=f"caller:{call_sid}")
        watchdog = asyncio.create_task(self._watch(), name=f"watchdog:{call_sid}")
        model = asyncio.create_task(
            self._supervisor.run(call_sid, self, self._set_reason), name=f"model:{call_sid}"
        )
        tasks = (caller, watchdog, model)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(CallEnded):
            await self.out.flush()
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, CallEnded):
                raise exc
        reason = next((r for t in done if (r := reason_of(t))), None)
        if reason is None:
            return  # the supervisor ended the call, said why and told the caller
        self._set_reason(reason)
        if reason in POLITE_ENDINGS:
            await self._supervisor.apologise(call_sid, reason)

    # ------------------------------------------------------------------ SessionHost

    @property
    def broken(self) -> asyncio.Event:
        """Set when a send to the session failed (see :class:`~.routing.CallerAudioRoute`)."""
        return self.route.broken

    async def attach(self, session: RealtimeSession) -> None:
        """Caller audio goes to ``session`` from now on, the audio held meanwhile first."""
        self.control.session = session
        await self.route.attach(session)

    def detach(self) -> bool:
        """Hold caller audio until a session is attached again (see
        :meth:`~.routing.CallerAudioRoute.detach`). False if it was already held."""
        return self.route.detach()

    def _on_attach(self, held_frames: int) -> None:
        self.metrics.session_started(self.metrics.frames - held_frames)

    async def on_model_event(self, event: Any) -> None:
        if self.filler is not None:
            await self.filler.on_session_event(event)
        await self.out.on_session_event(event)
        self._recorder.on_event(event)
        if self.guard is not None and (raw := server_event(event)) is not None:
            await self.guard.on_server_event(raw)

    def under_way(self) -> list[str]:
        """What the caller would notice if the session were replaced now, by name (empty:
        nothing): audio playing or held back (``outbound``), the recorder's
        (:meth:`~telephony.observability.recorder.SessionRecorder.under_way`), caller speech
        the model has not reported over (``caller_unheard``, see
        :meth:`~.inbound.InboundAudio.heard_out`), a pending hang-up or transfer."""
        names = [] if self.out.idle else ["outbound"]
        names += self._recorder.under_way()
        if self.control.busy:
            names.append("call_control")
        if not self.inbound.heard_out():
            names.append("caller_unheard")
        return names

    async def say_sorry(self) -> str:
        """The recorded apology to the caller, when nothing else can say it (no model, no
        REST); returns how, for ``call.apology``."""
        self.route.attached.set()  # the caller pump reads the socket: the clip's marks echo
        played = await self.out.play_clip(apology(), "apology")
        return "stream (recorded apology)" if played else "stream (apology not confirmed)"

    # ------------------------------------------------------------------ caller -> model

    async def _caller_pump(self) -> None:
        await self.route.attached.wait()  # until the model is ready, frames wait in the socket
        await self._read_caller()

    async def _caller_media(self, ulaw: bytes, now: float, t0: float) -> None:
        if self.recording is not None:
            self.recording.frame(ulaw, self.caller_s)
        if self.guard is not None:
            ulaw = await self.guard.caller_frame(ulaw, now, self.caller_s)
        pcm = self.inbound.audio(ulaw, now, t0)
        if pcm is None:  # ahead of real time: dropped
            self._dropped()
            return
        await self.route.deliver(pcm)

    # ------------------------------------------------------------------ model -> caller

    def _on_vad(self, kind: str, audio_ms: int | None) -> None:
        if kind == "speech_started":
            self.metrics.speech_started(audio_ms)
        else:
            self.metrics.speech_stopped(audio_ms)

    # ------------------------------------------------------------------ records

    def _finish(self) -> None:
        reason = self.end_reason or "unknown"
        duration = time.monotonic() - self._started_at
        tokens = self._recorder.tokens
        totals = {
            "reason": reason,
            "duration_s": round(duration, 3),
            "stream_sid": self.stream_sid,
            **self.inbound.totals(),
            **self.out.totals(),
            "protocol_errors": self.protocol_errors + self.inbound.protocol_errors,
            "model_errors": self._supervisor.model_errors + self._recorder.model_errors,
            "renewals": self._supervisor.renewals,
            **(self.guard.totals() if self.guard is not None else {}),
            "usage": self._recorder.usage,
            "tokens": tokens,
            "cost_usd": self._recorder.prices.call_cost(
                tokens, 0.0 if self.simulated else duration, self._outbound_call
            ),
            **({"simulated": True} if self.simulated else {}),
            "metrics": self.metrics.summary(),
        }
        close_recording(self.recording, totals)
        self._record("call.end", **totals)
        logger.info("call %s ended: %s", self.call_sid, reason)
        with contextlib.suppress(Exception):
            if self._log is not None:
                self._log.close()
