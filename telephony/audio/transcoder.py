"""The two directions of a phone call's audio, composed from the codec and the resamplers.

- :class:`CallerToModel`: μ-law 8 kHz (Twilio ``media`` payloads) -> pcm16 24 kHz (the model).
- :class:`ModelToCaller`: pcm16 24 kHz (model audio deltas) -> μ-law 8 kHz.
- :class:`Framer`: cuts μ-law into 160-byte (20 ms) frames for Twilio.

One object per direction per call; each carries its state across frames.
"""

from __future__ import annotations

import numpy as np

from .g711 import ULAW_DECODE_TABLE, ULAW_ENCODE_TABLE, ULAW_SILENCE
from .resample import Downsampler3, Upsampler3

__all__ = ["FRAME_BYTES", "CallerToModel", "Framer", "ModelToCaller"]

FRAME_BYTES = 160
"""One Twilio Media Streams frame: 20 ms of μ-law at 8 kHz."""


class CallerToModel:
    """μ-law 8 kHz bytes -> pcm16 24 kHz little-endian mono bytes, streaming.

    Every input byte yields exactly 6 output bytes (3 samples): 160 bytes (20 ms) in,
    960 bytes (20 ms) out. Added latency is the filter's group delay, 2 ms.
    """

    def __init__(self) -> None:
        self._up = Upsampler3()

    def feed(self, ulaw: bytes) -> bytes:
        """Transcode one chunk of caller audio (any length)."""
        x = ULAW_DECODE_TABLE[np.frombuffer(ulaw, dtype=np.uint8)].astype(np.float64)
        y = self._up.feed_samples(x)
        return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()

    def reset(self) -> None:
        """Forget the filter history."""
        self._up.reset()


class ModelToCaller:
    """pcm16 24 kHz little-endian mono bytes -> μ-law 8 kHz bytes, streaming.

    Accepts any byte count (odd splits included); 960 bytes (20 ms) in gives 160 bytes (20 ms)
    out when the input so far is a whole number of 3-sample groups. ``flush`` returns the rest at
    the end of a response and resets the state.
    """

    def __init__(self) -> None:
        self._down = Downsampler3()

    def feed(self, pcm16: bytes) -> bytes:
        """Transcode one chunk of model audio; returns the μ-law bytes it completes."""
        return self._encode(self._down.feed(pcm16))

    def flush(self) -> bytes:
        """Return the μ-law tail (partial group and 2 ms filter tail) and reset."""
        return self._encode(self._down.flush())

    def reset(self) -> None:
        """Drop everything held (after a ``clear``)."""
        self._down.reset()

    @staticmethod
    def _encode(pcm16: bytes) -> bytes:
        return ULAW_ENCODE_TABLE[np.frombuffer(pcm16, dtype="<u2")].tobytes()


class Framer:
    """Cuts a μ-law byte stream into :data:`FRAME_BYTES` frames.

    ``push`` returns the complete frames; ``flush`` pads the last partial frame with μ-law silence
    (0xFF) so that every frame sent to Twilio is exactly 20 ms.
    """

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        self._frame = frame_bytes
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back, waiting to complete a frame."""
        return len(self._buf)

    def push(self, data: bytes) -> list[bytes]:
        """Add bytes; return the frames now complete (possibly none)."""
        self._buf += data
        n = len(self._buf) // self._frame * self._frame
        if n == 0:
            return []
        out = [bytes(self._buf[i : i + self._frame]) for i in range(0, n, self._frame)]
        del self._buf[:n]
        return out

    def flush(self) -> list[bytes]:
        """Return the held bytes as one frame padded with silence, or nothing if none are held."""
        if not self._buf:
            return []
        frame = bytes(self._buf) + bytes([ULAW_SILENCE]) * (self._frame - len(self._buf))
        self._buf.clear()
        return [frame]

    def reset(self) -> None:
        """Drop held bytes (after a ``clear``)."""
        self._buf.clear()
