"""Caller audio to the model: the checks every inbound frame passes, and transcoding.

Beyond its own shape (:func:`telephony.twilio.media_stream.parse_message`), a frame must name
the call's ``streamSid``, carry a ``sequenceNumber`` above the last one (and not absurdly far
above), and a media payload of at most 200 ms. Media is transcoded μ-law 8 kHz → pcm16 24 kHz
with state carried across frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..audio import CallerToModel
from ..observability.call_metrics import CallMetrics
from ..twilio.media_stream import Connected, Dtmf, Mark, Media, ProtocolError, Start, Stop

__all__ = ["MAX_PAYLOAD_BYTES", "MAX_SEQUENCE_JUMP", "InboundAudio"]

COUNTER_EVERY_FRAMES = 250  # one audio.in record per 5 s of caller audio
MAX_PAYLOAD_BYTES = 1600  # 200 ms of μ-law; Twilio sends 160
MAX_SEQUENCE_JUMP = 10_000  # a jump beyond this is not a lost packet but a forged counter


class InboundAudio:
    """One call's inbound side.

    Args:
        record: writes a call-log record.
        metrics: the call's metrics (frame arrivals and per-frame CPU).
    """

    def __init__(self, record: Callable[..., Any], metrics: CallMetrics) -> None:
        self._record = record
        self._metrics = metrics
        self._up = CallerToModel()
        self.stream_sid: str | None = None
        self.last_sequence = 0
        self.frames_in = 0
        self.bytes_in = 0

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

    def audio(self, ulaw: bytes, now: float, t0: float) -> bytes:
        """One caller frame (μ-law 8 kHz bytes) as pcm16 24 kHz bytes for the model.

        ``now`` is when it arrived (``time.monotonic()``); ``t0`` when its parsing began
        (``time.perf_counter()``), for the per-frame CPU figure.
        """
        self._metrics.frame_arrived(now)
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
        self._metrics.inbound_processing(time.perf_counter() - t0)
        return pcm

    def totals(self) -> dict[str, Any]:
        """Inbound figures for ``call.end``."""
        return {"frames_in": self.frames_in, "audio_in_s": round(self.bytes_in / 8000, 3)}
