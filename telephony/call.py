"""The call bridge: one Twilio Media Streams socket joined to one ``RealtimeSession``.

Data flow for one call::

    Twilio ─ media (μ-law 8 kHz) ─▶ CallerToModel ─ pcm16 24 kHz ─▶ session.send_audio
    Twilio ◀─ media/mark/clear ─── Framer ◀─ ModelToCaller ◀─ pcm16 24 kHz ─ session audio events
            mark echoes ─▶ Playback ─▶ RealtimePlaybackTracker.on_play_ms (barge-in truncation)

The bridge owns the call's lifetime: it waits for ``start``, opens the session, runs the two pumps
(caller -> model, model -> caller) until either side ends, closes everything it opened with a
bounded timeout, and writes exactly one ``call.end`` record however the call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agents.realtime import RealtimePlaybackTracker, RealtimeSession
from agents.realtime.model_inputs import RealtimeModelSendRawMessage

from .audio import CallerToModel, Framer, ModelToCaller
from .call_control import CallContext, dial_twiml
from .call_log import CallLog
from .call_metrics import CallMetrics
from .media_stream import (
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)
from .models import create_response
from .playback import Playback
from .session_log import SessionRecorder
from .tracker import PhonePlaybackTracker
from .twilio_rest import TwilioCalls

__all__ = ["Admit", "CallLimits", "MediaStreamCall", "OpenSession", "Refused", "TwilioSocket"]

logger = logging.getLogger("telephony.call")

ULAW_BYTES_PER_MS = 8
PCM16_24K_BYTES_PER_MS = 48
COUNTER_EVERY_FRAMES = 250  # one audio.in record per 5 s of caller audio
MAX_PAYLOAD_BYTES = 1600  # 200 ms of μ-law; Twilio sends 160
MAX_SEQUENCE_JUMP = 10_000  # a jump beyond this is not a lost packet but a forged counter
MODEL_FAILURES = frozenset(
    {"model_error", "model_ended", "model_send_failed", "model_connect_failed"}
)
MAX_REPLAY_ITEMS = 40
RESUME_INSTRUCTIONS = (
    "The connection to you dropped for a moment and has just been restored. In one short "
    "sentence, say sorry for the interruption, then continue the conversation where it was."
)
POLITE_ENDINGS = frozenset({"server_shutdown", "max_duration"})  # we hang up: say goodbye
GREETING_INSTRUCTIONS = "The call has just connected. Greet the caller by saying: {}"
DTMF_TEXT = "The caller pressed these keys on the phone keypad: {}"
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


class TwilioSocket(Protocol):
    """The media socket as the bridge sees it (the app adapts Starlette's WebSocket to this)."""

    async def receive(self) -> str | bytes | None:
        """Next frame: text, bytes (a binary frame), or None once the socket is closed."""
        ...

    async def send(self, text: str) -> None:
        """Send one text frame; raises if the socket is gone."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket if still open; never raises."""
        ...


OpenSession = Callable[[RealtimePlaybackTracker, CallContext], Awaitable[RealtimeSession]]
"""Builds a session (not yet connected) for a call: ``(tracker, context) -> RealtimeSession``."""


@dataclass
class CallFeatures:
    """What a call does beyond bridging audio.

    Args:
        greeting: said by the agent as soon as the stream starts ('' for none).
        dtmf_timeout: seconds after the last key before collected digits go to the agent.
        hangup_grace: longest wait (seconds) for the goodbye to play before ``end_call`` hangs up.
        transfer_targets: allowed transfer destinations, ``{name: +E.164 or sip: URI}``.
        twilio: REST access to the live call (hang up, transfer); None closes the stream instead.
        observer: called with each call-log record (service metrics).
        on_frame: called with ``("in" | "out", seconds)`` per 20 ms frame processed.
    """

    greeting: str = ""
    dtmf_timeout: float = 2.0
    hangup_grace: float = 10.0
    transfer_targets: dict[str, str] = field(default_factory=dict)
    twilio: TwilioCalls | None = None
    observer: Callable[[dict[str, Any]], None] | None = None  # sees every call-log record
    on_frame: Callable[[str, float], None] | None = None  # per-frame processing time
    backend: str = "openai"  # which model answers, for the call log


class Refused(Exception):
    """Raised by an :data:`Admit` check: the stream is closed with ``code`` before any session."""

    def __init__(self, reason: str, code: int = POLICY_VIOLATION) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


Admit = Callable[[Start], None]
"""Decides whether a stream may go on once its ``start`` arrived; raises :class:`Refused`."""


class CallLimits:
    """Limits of one call, in seconds.

    Args:
        start_timeout: a socket that sends no ``start`` within this is closed with 1008.
        connect_timeout: opening the model session.
        close_timeout: closing the model session (OpenAI may drop without a close frame).
        idle_timeout: end the call after this long without caller audio.
        max_duration: end the call this long after ``start``.
    """

    def __init__(
        self,
        start_timeout: float = 5.0,
        connect_timeout: float = 15.0,
        close_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        max_duration: float = 3600.0,
    ) -> None:
        self.start_timeout = start_timeout
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self.idle_timeout = idle_timeout
        self.max_duration = max_duration


class _CallEnded(Exception):
    """Raised inside a pump to end the call with a reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MediaStreamCall:
    """Bridge one Twilio media socket to one realtime session. Call :meth:`run` once."""

    def __init__(
        self,
        socket: TwilioSocket,
        open_session: OpenSession,
        log_dir: Path,
        limits: CallLimits | None = None,
        admit: Admit | None = None,
        on_model_failure: Callable[[str, str], Awaitable[str]] | None = None,
        reconnects: int = 1,
        features: CallFeatures | None = None,
    ) -> None:
        self._socket = socket
        self._open_session = open_session
        self._log_dir = log_dir
        self._limits = limits or CallLimits()
        self._admit = admit
        self._features = features or CallFeatures()
        self._session: RealtimeSession | None = None
        self._first_audio_at: float | None = None
        self._digits: list[str] = []
        self._dtmf_task: asyncio.Task[None] | None = None
        self._hangup_task: asyncio.Task[None] | None = None
        self._on_model_failure = on_model_failure
        self._reconnects_left = reconnects
        self._sessions = 0
        self._generation = 0
        self.metrics = CallMetrics(time.monotonic(), on_frame=self._features.on_frame)
        self._events = SessionRecorder(self._record, on_vad=self._on_vad)
        self._end_requested = asyncio.Event()
        self._end_reason = "ended_by_server"
        self._close_code = 1000
        self._last_sequence = 0
        self._last_media_at = self._stream_started_at = time.monotonic()
        self._log: CallLog | None = None
        self.call_sid: str | None = None
        self.stream_sid: str | None = None
        self.end_reason: str | None = None
        self._started_at = time.monotonic()

        self._up = CallerToModel()
        self._down = ModelToCaller()
        self._framer = Framer()
        self._tracker = PhonePlaybackTracker()
        self._playback = Playback()
        self._interrupted_items: set[str] = set()
        self._out_item: tuple[str, int] | None = None  # item whose audio the framer holds

        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.model_audio_bytes = 0
        self.clears = 0
        self.interruptions = 0
        self.protocol_errors = 0
        self.model_errors = 0

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run the call to its end. Never raises (except cancellation)."""
        try:
            start = await self._await_start()
            if start is None:
                return
            await self._bridge()
        except asyncio.CancelledError:
            self._set_reason("server_shutdown")
            raise
        except Exception as exc:  # a bug of ours must still end the call cleanly
            logger.exception("call %s: unexpected error", self.call_sid)
            self._record("error", where="bridge", error=_describe(exc))
            self._set_reason("internal_error")
        finally:
            for task in (self._dtmf_task, self._hangup_task):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            await self._socket.close(self._close_code)
            self._finish()

    async def _await_start(self) -> Start | None:
        """Read ``connected`` then ``start``; anything else before ``start`` is logged, ignored."""
        deadline = time.monotonic() + self._limits.start_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._set_reason("no_start")
                self._close_code = POLICY_VIOLATION
                logger.warning("call ?: no start message within %.1fs", self._limits.start_timeout)
                return None
            try:
                frame = await asyncio.wait_for(self._socket.receive(), remaining)
            except TimeoutError:
                continue
            if frame is None:
                self._set_reason("twilio_closed_before_start")
                logger.info("call ?: socket closed before start")
                return None
            try:
                message = parse_message(frame)
            except ProtocolError as exc:
                self.protocol_errors += 1
                logger.warning("call ?: bad frame before start: %s", exc)
                continue
            if isinstance(message, Start):
                if self._admit is not None:
                    try:
                        self._admit(message)
                    except Refused as refused:
                        logger.warning(
                            "call %r: stream refused: %s", message.call_sid[:40], refused.reason
                        )
                        self._set_reason(f"refused: {refused.reason}")
                        self._close_code = refused.code
                        return None
                self._on_start(message)
                return message
            if isinstance(message, Connected):
                continue
            self.protocol_errors += 1
            logger.warning("call ?: %r before start, ignored", message.event)

    def _on_start(self, start: Start) -> None:
        self.call_sid = start.call_sid
        self.stream_sid = start.stream_sid
        self._last_sequence = start.sequence_number
        self._last_media_at = self._stream_started_at = time.monotonic()
        self.metrics.started_at = self._stream_started_at
        try:
            self._log = CallLog(self._log_dir, start.call_sid, self._features.observer)
        except ValueError as exc:
            logger.warning("call %r: no call log: %s", start.call_sid[:80], exc)
        fmt = start.start.media_format
        self._record(
            "stream.start",
            stream_sid=start.stream_sid,
            tracks=start.start.tracks,
            media_format={
                "encoding": fmt.encoding,
                "sample_rate": fmt.sample_rate,
                "channels": fmt.channels,
            },
            custom_parameters={k: v for k, v in start.custom_parameters.items() if k != "token"},
        )
        if fmt.encoding != "audio/x-mulaw" or fmt.sample_rate != 8000 or fmt.channels != 1:
            self._record("protocol.error", error=f"unexpected media format {fmt!r}")

    async def _bridge(self) -> None:
        """Run sessions until the call ends: one reconnect after a model failure, then apologise."""
        session = await self._connect()
        while True:
            if session is None:
                reason = "model_connect_failed"
            else:
                try:
                    reason = await self._run_session(session)
                finally:
                    await self._close_session(session)
            if reason not in MODEL_FAILURES:
                self._set_reason(reason)
                if reason in POLITE_ENDINGS:
                    await self._apologise(reason)
                return
            if self._reconnects_left > 0:
                self._reconnects_left -= 1
                self._record("model.reconnecting", after=reason)
                session = await self._connect()
                if session is not None:
                    await self._replay(session)
                    continue
                reason = "model_connect_failed"
            self._set_reason(reason)
            await self._apologise(reason)
            return

    async def _connect(self) -> RealtimeSession | None:
        """Open and connect a session (a fresh tracker each time); None if it failed."""
        assert self.call_sid is not None
        self._record("model.connecting", backend=self._features.backend)
        self._tracker = PhonePlaybackTracker()
        self._generation += 1
        t0 = time.monotonic()
        try:
            context = CallContext(call_sid=self.call_sid, control=self)
            session = await self._open_session(self._tracker, context)
            await asyncio.wait_for(session.enter(), self._limits.connect_timeout)
        except Exception as exc:
            self._record("model.connect_failed", error=_describe(exc))
            logger.warning("call %s: model connect failed: %s", self.call_sid, _describe(exc))
            if self._reconnects_left > 0 and self._sessions == 0:
                self._reconnects_left -= 1  # a failed first connect gets its one retry here
                self._record("model.reconnecting", after="model_connect_failed")
                return await self._connect()
            return None
        self._sessions += 1
        self.metrics.session_started()
        self._record("model.connected", connect_ms=round((time.monotonic() - t0) * 1000, 1))
        if self._sessions == 1 and self._features.greeting:
            await create_response(session, GREETING_INSTRUCTIONS.format(self._features.greeting))
            self._record("greeting.requested", text=self._features.greeting)
        return session

    async def _run_session(self, session: RealtimeSession) -> str:
        """Pump one session until something ends it; returns the reason."""
        self._session = session
        caller = asyncio.create_task(self._caller_pump(session), name=f"caller:{self.call_sid}")
        model = asyncio.create_task(self._model_pump(session), name=f"model:{self.call_sid}")
        watchdog = asyncio.create_task(self._watchdog(), name=f"watchdog:{self.call_sid}")
        try:
            done, _ = await asyncio.wait(
                {caller, model, watchdog}, return_when=asyncio.FIRST_COMPLETED
            )
            if caller in done and model not in done and _reason_of(caller) == "model_send_failed":
                # the model socket is gone: let the model side say how it ended
                done |= (await asyncio.wait({model}, timeout=self._limits.close_timeout))[0]
        finally:
            for task in (caller, model, watchdog):
                task.cancel()
            await asyncio.gather(caller, model, watchdog, return_exceptions=True)
        await self._flush_audio_quietly()
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, _CallEnded):
                raise exc
        reasons = {task: _reason_of(task) for task in done}
        caller_reason, model_reason = reasons.get(caller), reasons.get(model)
        if caller_reason == "model_send_failed" and model_reason:
            return model_reason  # the model side knows best how it ended
        return caller_reason or model_reason or reasons.get(watchdog) or "unknown"

    async def _flush_audio_quietly(self) -> None:
        with contextlib.suppress(_CallEnded):
            await self._flush_audio()

    async def _replay(self, session: RealtimeSession) -> None:
        """Give a new session the conversation so far, and let the agent pick up the thread."""
        items = self._events.conversation[-MAX_REPLAY_ITEMS:]
        for role, text in items:
            content_type = "input_text" if role == "user" else "output_text"
            item = {
                "type": "message",
                "role": role,
                "content": [{"type": content_type, "text": text}],
            }
            await session.model.send_event(
                RealtimeModelSendRawMessage(
                    message={"type": "conversation.item.create", "other_data": {"item": item}}
                )
            )
        await create_response(session, RESUME_INSTRUCTIONS)
        self._record("model.replayed", items=len(items))

    async def _apologise(self, reason: str) -> None:
        """We are ending the call (model gone, shutdown, time limit): tell the caller if we can;
        the stream is closed after."""
        if self._on_model_failure is None or self.call_sid is None:
            self._record("call.apology", via="none (stream closed)", reason=reason)
            return
        try:
            via = await asyncio.wait_for(
                self._on_model_failure(self.call_sid, reason), self._limits.close_timeout
            )
            self._record("call.apology", via=via, reason=reason)
        except Exception as exc:
            self._record("call.apology", via="failed", reason=reason, error=_describe(exc))

    async def _close_session(self, session: RealtimeSession) -> None:
        try:
            await asyncio.wait_for(session.close(), self._limits.close_timeout)
        except TimeoutError:
            self._record("model.close_timeout", timeout_s=self._limits.close_timeout)
        except Exception as exc:
            self._record("model.close_error", error=_describe(exc))

    # ------------------------------------------------------------------ keypad and call control

    def _on_dtmf(self, digit: str) -> None:
        """Collect keys until ``#`` or ``dtmf_timeout`` of quiet, then tell the agent."""
        self._record("dtmf", digit=digit)
        self._digits.append(digit)
        if self._dtmf_task is not None:
            self._dtmf_task.cancel()
        delay = 0.0 if digit == "#" else self._features.dtmf_timeout
        self._dtmf_task = asyncio.create_task(self._send_digits_after(delay))

    async def _send_digits_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        digits, self._digits = self._digits, []
        session = self._session
        if not digits or session is None:
            return
        text = DTMF_TEXT.format(" ".join(digits))
        try:
            await session.send_message(text)
            self._record("dtmf.sent", digits="".join(digits), text=text)
        except Exception as exc:
            self._record("model.error", where="dtmf", error=_describe(exc))

    async def hang_up(self, reason: str) -> str:
        """``end_call``: hang up once the goodbye has played (see ``CallControl``)."""
        if self._hangup_task is not None:
            return "The call is already ending."
        self._record("hangup.requested", reason=reason)
        self._hangup_task = asyncio.create_task(self._hang_up_after_goodbye())
        return "The call will end as soon as your goodbye has played. Say a short goodbye now."

    async def _hang_up_after_goodbye(self) -> None:
        started_before = self._events.responses_started
        t0 = time.monotonic()
        deadline = t0 + self._features.hangup_grace
        while time.monotonic() < deadline:
            goodbye_done = self._events.responses_idle_since(started_before)
            if goodbye_done and self._playback.unplayed_ms == 0 and self._out_item is None:
                break
            await asyncio.sleep(0.02)
        waited_ms = round((time.monotonic() - t0) * 1000)
        via = await self._rest("hang up", lambda twilio, sid: twilio.hang_up(sid))
        self._record("call.hangup", via=via, waited_ms=waited_ms)
        self.end("agent_hangup")

    async def transfer(self, destination: str) -> str:
        """``transfer_call``: update the live call with ``<Dial>`` to an allowed destination."""
        target = self._features.transfer_targets.get(destination)
        allowed = ", ".join(sorted(self._features.transfer_targets)) or "none"
        if target is None:
            self._record("transfer.refused", destination=str(destination)[:80])
            return f"Cannot transfer to {destination!r}. Allowed destinations: {allowed}."
        if self._features.twilio is None:
            self._record("transfer.refused", destination=destination, why="no REST credentials")
            return "Transfers are not available on this line."
        for _ in range(250):  # up to 5 s: let "I am transferring you" finish playing
            if self._playback.unplayed_ms == 0:
                break
            await asyncio.sleep(0.02)
        twiml = dial_twiml(target)
        via = await self._rest("transfer", lambda twilio, sid: twilio.update_twiml(sid, twiml))
        self._record("call.transfer", destination=destination, target=target, via=via)
        self.end("transferred")
        return f"Transferring the caller to {destination} now."

    async def _rest(self, what: str, action: Callable[[TwilioCalls, str], Awaitable[bool]]) -> str:
        """Run one REST update of this call; returns how it went, for the log. Never raises."""
        twilio = self._features.twilio
        if twilio is None or self.call_sid is None:
            return "none (no Twilio REST credentials; stream closed)"
        try:
            done = await action(twilio, self.call_sid)
        except Exception as exc:
            self._record("twilio.error", action=what, error=_describe(exc))
            return "twilio_rest failed"
        return "twilio_rest" if done else "twilio_rest (call already ended)"

    def _on_vad(self, kind: str, audio_ms: int | None) -> None:
        if kind == "speech_started":
            self.metrics.speech_started(audio_ms)
        else:
            self.metrics.speech_stopped(audio_ms)

    def end(self, reason: str) -> None:
        """Ask the call to end (e.g. ``server_shutdown``): goodbye if it can, then it closes."""
        self._end_reason = reason
        self._end_requested.set()

    async def _watchdog(self) -> None:
        """End the call when asked to, when the caller was silent too long, or it ran too long."""
        limits = self._limits
        started = self._stream_started_at
        while True:
            if self._end_requested.is_set():
                raise _CallEnded(self._end_reason)
            now = time.monotonic()
            if now - started >= limits.max_duration:
                self._record("limit", limit="max_duration", seconds=limits.max_duration)
                raise _CallEnded("max_duration")
            if now - self._last_media_at >= limits.idle_timeout:
                self._record("limit", limit="idle_timeout", seconds=limits.idle_timeout)
                raise _CallEnded("idle_timeout")
            wake = min(started + limits.max_duration, self._last_media_at + limits.idle_timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._end_requested.wait(), max(wake - now, 0.01))

    # ------------------------------------------------------------------ caller -> model

    async def _caller_pump(self, session: RealtimeSession) -> None:
        while True:
            frame = await self._socket.receive()
            if frame is None:
                raise _CallEnded("twilio_disconnected")
            t0 = time.perf_counter()
            try:
                message = parse_message(frame)
                self._check(message)
            except ProtocolError as exc:
                self.protocol_errors += 1
                self._record("protocol.error", error=str(exc)[:300])
                continue
            if isinstance(message, Media):
                await self._on_caller_audio(session, message.payload, t0)
            elif isinstance(message, Mark):
                self._on_mark_echo(message.name)
            elif isinstance(message, Dtmf):
                self._on_dtmf(message.digit)
            elif isinstance(message, Stop):
                self._record("stream.stop")
                raise _CallEnded("caller_hangup")
            elif isinstance(message, Start):
                self.protocol_errors += 1
                self._record("protocol.error", error="duplicate start")
            # Connected after start: harmless, ignored.

    def _check(self, message: Connected | Start | Media | Mark | Dtmf | Stop) -> None:
        """Checks beyond the message's own shape. Raises ProtocolError; the frame is dropped."""
        if isinstance(message, Connected):
            return
        if message.stream_sid != self.stream_sid:
            raise ProtocolError(f"{message.event} for unknown streamSid")
        sequence = message.sequence_number
        if sequence:  # Twilio numbers every message after `connected`
            if sequence <= self._last_sequence:
                raise ProtocolError(f"sequenceNumber {sequence} after {self._last_sequence}")
            if sequence > self._last_sequence + MAX_SEQUENCE_JUMP:
                raise ProtocolError(f"absurd sequenceNumber jump to {sequence}")
            self._last_sequence = sequence
        if isinstance(message, Media) and len(message.payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"media payload of {len(message.payload)} bytes")

    async def _on_caller_audio(self, session: RealtimeSession, ulaw: bytes, t0: float) -> None:
        """One caller frame to the model; ``t0`` is when its parsing began (perf_counter)."""
        self._last_media_at = time.monotonic()
        self.metrics.frame_arrived(self._last_media_at)
        self.frames_in += 1
        self.bytes_in += len(ulaw)
        if self.frames_in % COUNTER_EVERY_FRAMES == 0:
            self._record(
                "audio.in",
                frames=self.frames_in,
                bytes=self.bytes_in,
                seconds=round(self.bytes_in / 8000, 3),
            )
        pcm = self._up.feed(ulaw)
        self.metrics.inbound_processing(time.perf_counter() - t0)
        try:
            await session.send_audio(pcm)
        except Exception as exc:
            self._record("model.error", where="send_audio", error=_describe(exc))
            raise _CallEnded("model_send_failed") from exc

    def _on_mark_echo(self, name: str) -> None:
        played, known = self._playback.echoed(name)
        if not known:
            self._record("protocol.error", error=f"echo of unknown mark {name[:40]!r}")
            return
        if not played:
            self._record("mark.cleared", name=name)
            return
        for mark in played:
            if mark.generation == self._generation:  # not audio of a session since replaced
                self._tracker.on_play_ms(mark.item_id, mark.content_index, mark.ms)
            self._record("mark.played", name=mark.name, item_id=mark.item_id, ms=mark.ms)

    # ------------------------------------------------------------------ model -> caller

    async def _model_pump(self, session: RealtimeSession) -> None:
        try:
            async for event in session:
                await self._on_session_event(event)
        except _CallEnded:
            raise
        except Exception as exc:
            self.model_errors += 1
            self._record("model.error", where="session", error=_describe(exc))
            raise _CallEnded("model_error") from exc
        raise _CallEnded("model_ended")

    async def _on_session_event(self, event: Any) -> None:
        kind = event.type
        if kind == "audio":
            await self._on_model_audio(event.audio)
        elif kind == "audio_end":
            self._record("model.audio_done", item_id=event.item_id)
            await self._flush_audio()
        elif kind == "audio_interrupted":
            await self._on_interrupted(event.item_id)
        self._events.on_event(event)

    async def _on_model_audio(self, audio: Any) -> None:
        item_id, content_index = audio.item_id, audio.content_index
        data: bytes = audio.data
        self.model_audio_bytes += len(data)
        self._record(
            "model.audio",
            bytes=len(data),
            item_id=item_id,
            response_id=audio.response_id,
            content_index=content_index,
        )
        if item_id in self._interrupted_items:
            self._record("model.audio_dropped", item_id=item_id, bytes=len(data))
            return
        self.metrics.model_delta(item_id, time.monotonic())
        if self._out_item is not None and self._out_item != (item_id, content_index):
            await self._flush_audio()  # a new item starts: finish the previous one first
        self._out_item = (item_id, content_index)
        t0 = time.perf_counter()
        frames = self._framer.push(self._down.feed(data))
        self.metrics.outbound_processing(time.perf_counter() - t0, len(frames))
        await self._send_frames(frames)

    async def _flush_audio(self) -> None:
        """End of an item's audio: send the transcoder's tail and the padded last frame."""
        if self._out_item is None:
            return
        await self._send_frames(self._framer.push(self._down.flush()) + self._framer.flush())
        self._out_item = None

    async def _send_frames(self, frames: list[bytes]) -> None:
        if not frames or self._out_item is None or self.stream_sid is None:
            return
        now = time.monotonic()
        if self._first_audio_at is None:
            self._first_audio_at = now
            self._record(
                "audio.first_out",
                ms_after_start=round((self._first_audio_at - self._stream_started_at) * 1000, 1),
                frames_in_before=self.frames_in,
            )
        latencies = self.metrics.frame_sent(self._out_item[0], now)
        if latencies:
            self._record("latency", item_id=self._out_item[0], **latencies)
        for frame in frames:
            await self._send(media_message(self.stream_sid, frame))
        self.frames_out += len(frames)
        item_id, content_index = self._out_item
        ms = sum(len(f) for f in frames) / ULAW_BYTES_PER_MS
        mark = self._playback.sent(item_id, content_index, ms, self._generation)
        self._tracker.on_sent_ms(item_id, content_index, ms)
        await self._send(mark_message(self.stream_sid, mark.name))
        self._record("mark.sent", name=mark.name, item_id=item_id, ms=ms, frames=len(frames))

    async def _on_interrupted(self, item_id: str) -> None:
        """Barge-in: Twilio drops its buffer; we drop what we hold for the item."""
        self.interruptions += 1
        self._interrupted_items.add(item_id)
        self._down.reset()
        self._framer.reset()
        self._out_item = None
        playing = self._playback.unplayed_ms > 0
        dropped_ms = self._playback.cleared()
        if self.stream_sid is not None:
            await self._send(clear_message(self.stream_sid))
        self.clears += 1
        reaction_ms = self.metrics.clear_sent(time.monotonic(), playing)
        self._record(
            "clear.sent",
            item_id=item_id,
            playing=playing,
            dropped_ms=round(dropped_ms, 1),
            barge_in_ms=reaction_ms,
        )

    async def _send(self, text: str) -> None:
        try:
            await self._socket.send(text)
        except Exception as exc:
            raise _CallEnded("twilio_disconnected") from exc

    # ------------------------------------------------------------------ records

    def _set_reason(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason

    def _record(self, event: str, **fields: Any) -> None:
        if self._log is not None:
            self._log.write(event, **fields)
        elif event.endswith("error"):
            logger.warning("call %s: %s %s", self.call_sid, event, fields)

    def _finish(self) -> None:
        reason = self.end_reason or "unknown"
        totals = {
            "reason": reason,
            "duration_s": round(time.monotonic() - self._started_at, 3),
            "stream_sid": self.stream_sid,
            "frames_in": self.frames_in,
            "audio_in_s": round(self.bytes_in / 8000, 3),
            "frames_out": self.frames_out,
            "audio_out_s": round(self.frames_out * 0.02, 3),
            "model_audio_s": round(self.model_audio_bytes / PCM16_24K_BYTES_PER_MS / 1000, 3),
            "marks_sent": self._playback.marks_sent,
            "marks_played": self._playback.marks_played,
            "marks_cleared": self._playback.marks_cleared,
            "played_ms": round(self._playback.played_ms, 1),
            "dropped_ms": round(self._playback.dropped_ms, 1),
            "clears": self.clears,
            "interruptions": self.interruptions,
            "protocol_errors": self.protocol_errors,
            "model_errors": self.model_errors + self._events.model_errors,
            "usage": self._events.usage,
            "metrics": self.metrics.summary(),
        }
        self._record("call.end", **totals)
        logger.info("call %s ended: %s", self.call_sid, reason)
        with contextlib.suppress(Exception):
            if self._log is not None:
                self._log.close()


def _reason_of(task: asyncio.Task[Any]) -> str | None:
    exc = None if task.cancelled() else task.exception()
    return exc.reason if isinstance(exc, _CallEnded) else None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
