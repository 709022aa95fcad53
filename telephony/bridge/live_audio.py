"""GPT-Live's audio to the caller: μ-law straight through, whole 20 ms frames, a mark per
delta, no ``clear``.

GPT-Live speaks in the session's format (``audio/pcmu`` 8 kHz, Twilio's own), so each
``session.output_audio.delta`` goes out as it arrives: cut into 160-byte frames (a remainder
waits for the next delta; nothing else is held back), one ``media`` message and one ``mark``.
The model decides itself when to stop for the caller and never learns what was heard, so
nothing is cleared or truncated here; marks only measure the playout (``mark.played``).

Which of that audio is speech gives the call its responses without a response lifecycle
(:class:`~telephony.agent.live.AgentSpeech`); a response has been heard when it is over and
the speech sent has played. Call control reads them (:class:`~telephony.control.Carrier`'s
``heard``): the goodbye is the response begun after the ``end_call``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..agent.live import AgentSpeech, speech_frames
from ..audio import FRAME_BYTES, Framer, ulaw_decode
from ..audio.echo import PlayoutReference
from ..twilio.media_stream import MediaMessages, mark_message
from .playback import Playback

__all__ = ["LiveOutbound", "SpeechPlayback"]

SPEECH, QUIET = "speech", "quiet"  # what a mark's audio was (its ``item_id``)


class SpeechPlayback(Playback):
    """:class:`~.playback.Playback` whose :attr:`unplayed_ms` counts only the agent's speech
    still on its way (GPT-Live's output is continuous: its silence need not finish playing
    before a hang-up or a transfer)."""

    @property
    def unplayed_ms(self) -> float:
        return sum(m.ms for m in self._pending if m.item_id == SPEECH)


class LiveOutbound:
    """One call's GPT-Live audio to Twilio.

    Args:
        send: sends one text frame to Twilio (raises when the socket is gone).
        record: writes a call-log record.
        on_first_frame: called once, with ``time.monotonic()``, when the first frame goes out.
        on_speech: called when a response starts (the hold sound stops for it).
        clock: the caller's audio clock (seconds), which :attr:`reference` (set for the echo
            gate) places the playout on.
    """

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        record: Callable[..., Any],
        on_first_frame: Callable[[float], None],
        on_speech: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._record = record
        self._on_first_frame: Callable[[float], None] | None = on_first_frame
        self._on_speech = on_speech
        self._clock = clock
        self.reference: PlayoutReference | None = None  # what played, for the echo gate
        self._mark_samples: dict[str, int] = {}
        self._media: MediaMessages | None = None
        self.stream_sid: str | None = None
        self.playback = SpeechPlayback()
        self._framer = Framer()
        self.frames_out = 0
        self.model_audio_bytes = 0
        self.speech_frames = 0
        self.speech = AgentSpeech()

    def start(self, stream_sid: str) -> None:
        """The stream's ``start``: audio goes to ``stream_sid`` from now on."""
        self.stream_sid = stream_sid
        self._media = MediaMessages(stream_sid)

    @property
    def responses_started(self) -> int:
        return self.speech.responses_started

    @property
    def idle(self) -> bool:
        """The agent is not speaking and all its speech sent has played."""
        return not self.speech.speaking and self.playback.unplayed_ms == 0

    @property
    def playing(self) -> bool:
        """Speech sent has not all played yet."""
        return self.playback.unplayed_ms > 0

    paused = False  # GPT-Live's audio is never paused by the bridge
    current_item: str | None = None  # nor split into items (AMD's voicemail reads this)

    def responses_idle_since(self, started_before: int) -> bool:
        """A response begun after ``started_before`` responses is over and played."""
        return self.responses_started > started_before and self.idle

    async def on_delta(self, ulaw: bytes) -> None:
        """One ``session.output_audio.delta`` (μ-law 8 kHz bytes) to the caller, at once."""
        self.model_audio_bytes += len(ulaw)
        frames = self._framer.push(ulaw)
        if not frames or self._media is None or self.stream_sid is None:
            return
        now = time.monotonic()
        if self._on_first_frame is not None:
            self._on_first_frame(now)
            self._on_first_frame = None
        data = b"".join(frames)
        pcm = ulaw_decode(data)
        speech = speech_frames(pcm, FRAME_BYTES)
        if self.speech.heard(speech > 0, now):
            self._record("agent.speech_started", response=self.responses_started)
            if self._on_speech is not None:
                await self._on_speech()
        self.speech_frames += speech
        await self._send(self._media.media(data))
        self.frames_out += len(frames)
        ms = len(data) / 8
        mark = self.playback.sent(SPEECH if speech else QUIET, 0, ms)
        if self.reference is not None:
            self._mark_samples[mark.name] = self.reference.play(pcm, self._clock())
        await self._send(mark_message(self.stream_sid, mark.name))
        self._record("mark.sent", name=mark.name, ms=ms, frames=len(frames), speech=speech)

    async def send_untracked(self, ulaw: bytes) -> None:
        """μ-law audio that is not the agent's (the hold sound): one ``media`` message."""
        if self._media is not None:
            await self._send(self._media.media(ulaw))

    def on_mark_echo(self, name: str) -> None:
        """Twilio echoed mark ``name``: the audio before it played."""
        played, known = self.playback.echoed(name)
        if not known:
            self._record("protocol.error", error=f"echo of unknown mark {name[:40]!r}")
            return
        for mark in played:
            if self.reference is not None and mark.name in self._mark_samples:
                self.reference.played_until(self._mark_samples.pop(mark.name), self._clock())
            self._record("mark.played", name=mark.name, ms=mark.ms)

    def totals(self) -> dict[str, Any]:
        """Outbound figures for ``call.end``."""
        playback = self.playback
        return {
            "frames_out": self.frames_out,
            "audio_out_s": round(self.frames_out * FRAME_BYTES / 8000, 3),
            "model_audio_s": round(self.model_audio_bytes / 8000, 3),
            "speech_out_s": round(self.speech_frames * 0.02, 3),
            "agent_responses": self.responses_started,
            "marks_sent": playback.marks_sent,
            "marks_played": playback.marks_played,
            "played_ms": round(playback.played_ms, 1),
            "clears": 0,
        }
