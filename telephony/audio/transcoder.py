"""The two directions of a phone call's audio, composed from the codec and the resamplers.

- :class:`CallerToModel`: μ-law 8 kHz (Twilio ``media`` payloads) -> pcm16 24 kHz (the model).
- :class:`ModelToCaller`: pcm16 24 kHz (model audio deltas) -> μ-law 8 kHz.
- :class:`Framer`: cuts μ-law into 160-byte (20 ms) frames for Twilio.

One object per direction per call; each carries its state across frames.

Backends: a compiled inner loop (``telephony.audio._fir``, built at install when a C compiler is
present) does each direction in one call per frame; without it the same filters run in numpy.
Both give the same output to within 1 LSB. ``backend="numpy"`` forces the fallback.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .g711 import ULAW_DECODE_TABLE, ULAW_ENCODE_TABLE, ULAW_SILENCE
from .resample import _PHASE, FILTER_TAPS, Downsampler3, Upsampler3

try:  # the optional compiled loop
    from . import _fir
except ImportError:  # pragma: no cover - depends on the install
    _fir = None

__all__ = ["COMPILED", "FRAME_BYTES", "CallerToModel", "Framer", "ModelToCaller"]

FRAME_BYTES = 160
"""One Twilio Media Streams frame: 20 ms of μ-law at 8 kHz."""

COMPILED = _fir is not None
"""True when the compiled inner loop is installed."""

Backend = Literal["auto", "c", "numpy"]

_DECODE_BYTES = ULAW_DECODE_TABLE.astype("<i2").tobytes()
_ENCODE_BYTES = ULAW_ENCODE_TABLE.tobytes()


def _use_c(backend: Backend) -> bool:
    if backend == "c" and _fir is None:
        raise RuntimeError("the compiled audio loop (telephony.audio._fir) is not installed")
    return backend != "numpy" and _fir is not None


class CallerToModel:
    """μ-law 8 kHz bytes -> pcm16 24 kHz little-endian mono bytes, streaming.

    Every input byte yields exactly 6 output bytes (3 samples): 160 bytes (20 ms) in,
    960 bytes (20 ms) out. Added latency is the filter's group delay, 2 ms.
    """

    def __init__(self, backend: Backend = "auto") -> None:
        self._up = Upsampler3()
        self._c = _use_c(backend)
        self._bank = self._up.bank.tobytes()
        self._state = bytearray(self._up.history_len * 8)

    def feed(self, ulaw: bytes) -> bytes:
        """Transcode one chunk of caller audio (any length)."""
        if self._c:
            return _fir.up3(self._state, self._bank, _DECODE_BYTES, ulaw)
        x = ULAW_DECODE_TABLE[np.frombuffer(ulaw, dtype=np.uint8)].astype(np.float64)
        y = self._up.feed_samples(x)
        return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()

    def reset(self) -> None:
        """Forget the filter history."""
        self._up.reset()
        self._state[:] = bytes(len(self._state))


class ModelToCaller:
    """pcm16 24 kHz little-endian mono bytes -> μ-law 8 kHz bytes, streaming.

    Accepts any byte count (odd splits included); 960 bytes (20 ms) in gives 160 bytes (20 ms)
    out when the input so far is a whole number of 3-sample groups. ``flush`` returns the rest at
    the end of a response and resets the state.
    """

    def __init__(self, backend: Backend = "auto") -> None:
        self._down = Downsampler3()
        self._c = _use_c(backend)
        self._kernel = self._down.kernel.tobytes()
        self._state = bytearray()
        self._odd = b""
        self.reset()

    def feed(self, pcm16: bytes) -> bytes:
        """Transcode one chunk of model audio; returns the μ-law bytes it completes."""
        if not self._c:
            return self._encode(self._down.feed(pcm16))
        if self._odd or len(pcm16) % 2:
            data = self._odd + pcm16
            usable = len(data) - len(data) % 2
            self._odd, pcm16 = data[usable:], data[:usable]
        return _fir.down3(self._state, self._kernel, _ENCODE_BYTES, pcm16)

    def flush(self) -> bytes:
        """Return the μ-law tail (partial group and 2 ms filter tail) and reset."""
        if not self._c:
            return self._encode(self._down.flush())
        pending = int(np.frombuffer(self._state, dtype=np.float64)[-1])
        pad = (-pending) % 3 + (FILTER_TAPS - 1) // 2
        tail = _fir.down3(self._state, self._kernel, _ENCODE_BYTES, bytes(2 * pad))
        self.reset()
        return tail

    def reset(self) -> None:
        """Drop everything held (after a ``clear``)."""
        self._down.reset()
        state = np.zeros(FILTER_TAPS - 1 + 3)
        state[FILTER_TAPS - 1 : FILTER_TAPS - 1 + len(_PHASE)] = _PHASE
        state[-1] = len(_PHASE)
        self._state = bytearray(state.tobytes())
        self._odd = b""

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
