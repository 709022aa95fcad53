"""When the agent speaks on GPT-Live, which has no response lifecycle: *responses* from its
output audio, for call control (which response is the goodbye, and when it is over).

A response starts with speech (a frame peaking at :data:`SPEECH_PEAK` or more) after at least
:data:`HANGOVER_S` without any, or with the first speech after the model was asked to speak
(:meth:`AgentSpeech.asked`: a greeting, a goodbye, a tool batch's ``response.create``; a
goodbye may follow the previous words closely); it is over :data:`HANGOVER_S` after its last
speech (LiveKit's gate for GPT-Live's continuous output uses the same 0.8 s).
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["HANGOVER_S", "SPEECH_PEAK", "AgentSpeech", "speech_frames"]

SPEECH_PEAK = 400  # pcm16 peak of a frame that is speech (-38 dBFS), not line silence
HANGOVER_S = 0.8


def speech_frames(pcm: bytes, frame_samples: int) -> int:
    """How many of the whole frames of ``frame_samples`` in ``pcm`` (pcm16 little-endian
    bytes) peak at :data:`SPEECH_PEAK` or more."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2")
    whole = samples.size // frame_samples * frame_samples
    if not whole:
        return 0
    peaks = np.abs(samples[:whole].astype(np.int32)).reshape(-1, frame_samples).max(1)
    return int((peaks >= SPEECH_PEAK).sum())


class AgentSpeech:
    """The agent's responses as its output audio shows them."""

    def __init__(self) -> None:
        self.responses_started = 0
        self._last_speech_at = float("-inf")
        self._asked = False

    def asked(self) -> None:
        """The model was just asked to speak: its next speech starts a response."""
        self._asked = True

    def heard(self, speech: bool, now: float | None = None) -> bool:
        """Output audio went out (``speech``: some of it is speech); True when it starts a
        response."""
        if not speech:
            return False
        now = time.monotonic() if now is None else now
        starts = self._asked or now - self._last_speech_at >= HANGOVER_S
        self._last_speech_at = now
        if starts:
            self.responses_started += 1
            self._asked = False
        return starts

    @property
    def speaking(self) -> bool:
        """Speech went out within the last :data:`HANGOVER_S`."""
        return time.monotonic() - self._last_speech_at < HANGOVER_S

    def responses_idle_since(self, started_before: int) -> bool:
        """A response begun after ``started_before`` responses is over (not whether it has
        played: the caller's side knows that)."""
        return self.responses_started > started_before and not self.speaking
