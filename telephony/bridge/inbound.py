"""Caller audio to the model: the checks every inbound frame passes, pacing, and transcoding.

Beyond its own shape (:func:`telephony.twilio.media_stream.parse_message`), a frame must name
the call's ``streamSid``, carry a ``sequenceNumber`` above the last one (and not absurdly far
above), and a media payload of at most 200 ms. Media is transcoded μ-law 8 kHz → pcm16 24 kHz
with state carried across frames.

Twilio sends audio in real time, so a caller may send at most as much audio as time has passed
since its first frame, plus ``audio_ahead`` seconds (``AUDIO_AHEAD_LIMIT``: late frames
catching up after a network hiccup fit in it). Audio beyond that is dropped
(``audio.dropped``); once ``ABUSE_DROPPED_MS`` has been dropped the call is ended as abuse. A
burst of ``ERROR_BURST`` refused frames within ``ERROR_WINDOW_S`` ends it too; refused frames
are logged one by one only up to ``LOGGED_ERRORS``, then one record in every hundred.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..audio import CallerToModel, quiet_codes
from ..observability.call_metrics import CallMetrics
from ..twilio.media_stream import Connected, Dtmf, Mark, Media, ProtocolError, Start, Stop

__all__ = ["MAX_PAYLOAD_BYTES", "MAX_SEQUENCE_JUMP", "InboundAudio"]

COUNTER_EVERY_FRAMES = 250  # one audio.in record per 5 s of caller audio
ABUSE_DROPPED_MS = 10_000.0
ERROR_BURST = 50
ERROR_WINDOW_S = 10.0
LOGGED_ERRORS = 20
MAX_PAYLOAD_BYTES = 1600  # 200 ms of μ-law; Twilio sends 160
MAX_SEQUENCE_JUMP = 10_000  # a jump beyond this is not a lost packet but a forged counter
LOUD_PEAK = 1000  # pcm16 units (about -30 dBFS): a frame reaching it may be speech
END_SLACK_FRAMES = 3  # a loud frame this close to the model's end of speech is part of it
UNHEARD_LOUD_FRAMES = 100  # loud audio the model never called speech (noise, echo) blocks no
# longer than 2 s of caller audio
_QUIET = quiet_codes(LOUD_PEAK)


class InboundAudio:
    """One call's inbound side.

    Args:
        record: writes a call-log record.
        metrics: the call's metrics (frame arrivals and per-frame CPU).
        audio_ahead: seconds of audio a caller may send ahead of real time; 0: no limit.
    """

    def __init__(
        self, record: Callable[..., Any], metrics: CallMetrics, audio_ahead: float = 1.0
    ) -> None:
        self._record = record
        self._metrics = metrics
        self._ahead_ms = audio_ahead * 1000
        self._up = CallerToModel()
        self.stream_sid: str | None = None
        self.last_sequence = 0
        self.frames_in = 0
        self.last_loud_frame = -1  # index of the last frame with a sample reaching LOUD_PEAK
        self.bytes_in = 0
        self.protocol_errors = 0
        self.dropped_ms = 0.0
        self._first_at: float | None = None
        self._accepted_ms = 0.0
        self._error_times: deque[float] = deque(maxlen=ERROR_BURST)

    def check(self, message: Connected | Start | Media | Mark | Dtmf | Stop) -> None:
        """Checks beyond the message's own shape.

        Raises:
            ProtocolError: the frame is to be dropped; the message says why.
        """
        if isinstance(message, Connected):
            return
        if message.stream_sid != self.stream_sid:
            raise ProtocolError(f"{message.event} for unknown streamSid")
        sequence = message.sequence_number
        if sequence:  # Twilio numbers every message after `connected`
            if sequence <= self.last_sequence:
                raise ProtocolError(f"sequenceNumber {sequence} after {self.last_sequence}")
            if sequence > self.last_sequence + MAX_SEQUENCE_JUMP:
                raise ProtocolError(f"absurd sequenceNumber jump to {sequence}")
            self.last_sequence = sequence
        if isinstance(message, Media) and len(message.payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"media payload of {len(message.payload)} bytes")

    def refused(self, error: str, now: float) -> bool:
        """A frame was refused (``error`` says why); True when refusals come in a burst that
        ends the call."""
        self.protocol_errors += 1
        if self.protocol_errors <= LOGGED_ERRORS or self.protocol_errors % 100 == 0:
            self._record("protocol.error", error=error[:300], count=self.protocol_errors)
        self._error_times.append(now)
        return len(self._error_times) == ERROR_BURST and now - self._error_times[0] < ERROR_WINDOW_S

    @property
    def abusive(self) -> bool:
        """The caller sent far more audio than real time allows."""
        return self.dropped_ms >= ABUSE_DROPPED_MS

    def accept(self, ulaw: bytes, now: float) -> bool:
        """Count one caller frame (μ-law 8 kHz bytes) arrived at ``now``
        (``time.monotonic()``); False when it arrived ahead of real time and is dropped. A
        frame with a sample reaching ``LOUD_PEAK`` sets :attr:`last_loud_frame`. (GPT-Live
        takes the μ-law itself: its bridge calls this alone.)"""
        frame_ms = len(ulaw) / 8
        if self._first_at is None:
            self._first_at = now
        allowed_ms = (now - self._first_at) * 1000 + self._ahead_ms
        if self._ahead_ms and self._accepted_ms + frame_ms > allowed_ms:
            if not self.dropped_ms or int(self.dropped_ms) % 1000 < frame_ms:
                self._record("audio.dropped", reason="ahead of real time", ms=self.dropped_ms)
            self.dropped_ms += frame_ms
            return False
        self._accepted_ms += frame_ms
        self._metrics.frame_arrived(now)
        self.frames_in += 1
        if ulaw.translate(None, _QUIET):  # some sample reaches LOUD_PEAK
            self.last_loud_frame = self.frames_in - 1
        self.bytes_in += len(ulaw)
        if self.frames_in % COUNTER_EVERY_FRAMES == 0:
            self._record(
                "audio.in",
                frames=self.frames_in,
                bytes=self.bytes_in,
                seconds=round(self.bytes_in / 8000, 3),
            )
        return True

    def audio(self, ulaw: bytes, now: float, t0: float) -> bytes | None:
        """One caller frame (μ-law 8 kHz bytes) as pcm16 24 kHz bytes for the model, or None
        when it arrived ahead of real time and was dropped.

        ``now`` is when it arrived (``time.monotonic()``); ``t0`` when its parsing began
        (``time.perf_counter()``), for the per-frame CPU figure. A frame with a sample reaching
        ``LOUD_PEAK`` sets :attr:`last_loud_frame`.
        """
        if not self.accept(ulaw, now):
            return None
        pcm = self._up.feed(ulaw)
        self._metrics.inbound_processing(time.perf_counter() - t0)
        return pcm

    def heard_out(self) -> bool:
        """Every loud caller frame so far is behind the model's last reported end of speech
        (within ``END_SLACK_FRAMES``), or ``UNHEARD_LOUD_FRAMES`` frames old. The model's VAD
        events trail the audio (its hangover, the network, our own event loop): a session
        replaced in that window would leave the start of a turn with the old one. Counted in
        caller frames, not seconds: a loop that fell behind reads many frames at once."""
        loud = self.last_loud_frame
        if loud < 0 or loud <= self._metrics.speech_end_frame + END_SLACK_FRAMES:
            return True
        return self.frames_in - 1 - loud >= UNHEARD_LOUD_FRAMES

    def totals(self) -> dict[str, Any]:
        """Inbound figures for ``call.end``."""
        totals: dict[str, Any] = {
            "frames_in": self.frames_in,
            "audio_in_s": round(self.bytes_in / 8000, 3),
        }
        if self.dropped_ms:
            totals["audio_dropped_ms"] = round(self.dropped_ms, 1)
        return totals
