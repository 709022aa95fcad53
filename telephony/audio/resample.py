"""Streaming 8 kHz ⇄ 24 kHz resamplers: integer ×3 / ÷3 polyphase linear-phase FIR.

One Kaiser-windowed-sinc low-pass (97 taps at 24 kHz, cut-off 3.95 kHz, β = 8) serves both
directions: flat within 0.03 dB to 3.4 kHz, at least 80 dB down from 4.6 kHz. Each resampler
carries its filter history across calls to ``feed``, so the output does not depend on how the
input was split, there are no clicks at frame edges, and nothing is held back beyond the
filter's own group delay of 48 samples at 24 kHz (2.0 ms).

Buffers are float64 internally; samples leave as pcm16 rounded to nearest and clipped.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["FILTER_TAPS", "GROUP_DELAY_MS", "Downsampler3", "Upsampler3", "design_lowpass"]

FILTER_TAPS = 97
GROUP_DELAY_MS = (FILTER_TAPS - 1) / 2 / 24.0
"""Group delay of either direction, in milliseconds (2.0)."""


def design_lowpass(
    taps: int = FILTER_TAPS, cutoff_hz: float = 3950.0, rate_hz: float = 24000.0, beta: float = 8.0
) -> np.ndarray:
    """Kaiser-windowed sinc low-pass with unity DC gain; float64[taps]. ``taps`` must be odd."""
    if taps % 2 == 0:
        raise ValueError("taps must be odd for an integer group delay")
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff_hz / rate_hz * n) * np.kaiser(taps, beta)
    return h / h.sum()


_LOWPASS = design_lowpass()

# Two leading zeros put each 8 kHz output instant on an input sample (3n), so the decimator's
# delay is exactly 16 output samples (2.0 ms), not a fraction of one.
_PHASE = np.zeros(2)


def _to_pcm16(y: np.ndarray) -> bytes:
    return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()


class Upsampler3:
    """8 kHz -> 24 kHz, pcm16 little-endian mono in and out, streaming.

    ``feed`` accepts any byte count (an odd trailing byte is kept for the next call) and returns
    exactly three output samples per complete input sample: 20 ms (320 bytes) in, 20 ms
    (960 bytes) out.
    """

    def __init__(self) -> None:
        h = _LOWPASS * 3.0  # zero-stuffing divides the gain by 3
        self._phases_per_tap = -(-len(h) // 3)  # taps per polyphase branch (33)
        padded = np.zeros(self._phases_per_tap * 3)
        padded[: len(h)] = h
        # y[3n + p] = sum_k h[3k + p] * x[n - k]; as a matrix: windows(x) @ H, H[j, p]
        # with window index j = K-1-k.
        self._bank = padded.reshape(self._phases_per_tap, 3)[::-1].copy()
        self._history = np.zeros(self._phases_per_tap - 1)
        self._odd = b""

    @property
    def bank(self) -> np.ndarray:
        """The polyphase matrix, float64[K, 3]: output 3n+p = sum_j window_n[j] * bank[j, p]."""
        return self._bank

    @property
    def history_len(self) -> int:
        """Input samples of history carried between calls (K - 1)."""
        return self._phases_per_tap - 1

    def feed(self, pcm16: bytes) -> bytes:
        """Resample a chunk of 8 kHz pcm16; returns the 24 kHz pcm16 it completes."""
        return _to_pcm16(self.feed_samples(self._take_samples(pcm16)))

    def feed_samples(self, x: np.ndarray) -> np.ndarray:
        """Resample float samples at 8 kHz; returns float samples at 24 kHz (3 per input)."""
        if len(x) == 0:
            return np.zeros(0)
        ext = np.concatenate((self._history, x))
        self._history = ext[len(ext) - (self._phases_per_tap - 1) :]
        windows = sliding_window_view(ext, self._phases_per_tap)
        return (windows @ self._bank).reshape(-1)

    def _take_samples(self, pcm16: bytes) -> np.ndarray:
        data = self._odd + pcm16
        usable = len(data) - len(data) % 2
        self._odd = data[usable:]
        return np.frombuffer(data, dtype="<i2", count=usable // 2).astype(np.float64)

    def flush(self) -> bytes:
        """Return the filter's tail (the last 2 ms still in its history) and reset the state."""
        tail = self.feed_samples(np.zeros(self._phases_per_tap // 2))
        self.reset()
        return _to_pcm16(tail[: (FILTER_TAPS - 1) // 2])

    def reset(self) -> None:
        """Forget all history, as if newly made."""
        self._history[:] = 0.0
        self._odd = b""


class Downsampler3:
    """24 kHz -> 8 kHz, pcm16 little-endian mono in and out, streaming.

    ``feed`` accepts any byte count; input samples are consumed in groups of three (a partial
    group, and an odd trailing byte, wait for the next call). 20 ms (960 bytes) in gives exactly
    20 ms (320 bytes) out whenever the input so far is a whole number of groups.
    """

    def __init__(self) -> None:
        self._taps = FILTER_TAPS
        self._kernel = _LOWPASS[::-1].copy()
        self._history = np.zeros(self._taps - 1)
        self._pending = _PHASE.copy()  # samples not yet making a full group of three
        self._odd = b""

    @property
    def kernel(self) -> np.ndarray:
        """The reversed low-pass, float64[taps], applied to each input window."""
        return self._kernel

    def feed(self, pcm16: bytes) -> bytes:
        """Resample a chunk of 24 kHz pcm16; returns the 8 kHz pcm16 it completes."""
        data = self._odd + pcm16
        usable = len(data) - len(data) % 2
        self._odd = data[usable:]
        x = np.frombuffer(data, dtype="<i2", count=usable // 2).astype(np.float64)
        return _to_pcm16(self.feed_samples(x))

    def feed_samples(self, x: np.ndarray) -> np.ndarray:
        """Resample float samples at 24 kHz; returns float samples at 8 kHz (1 per 3 input)."""
        if len(self._pending):
            x = np.concatenate((self._pending, x))
        groups = len(x) // 3
        self._pending = x[groups * 3 :]
        if groups == 0:
            return np.zeros(0)
        ext = np.concatenate((self._history, x[: groups * 3]))
        self._history = ext[len(ext) - (self._taps - 1) :]
        # Output n ends its window on the last sample of group n.
        windows = sliding_window_view(ext[2:], self._taps)[::3]
        return windows @ self._kernel

    def flush(self) -> bytes:
        """Complete a partial group with zeros, push the filter's 2 ms tail out, reset the state.

        Returns pcm16 at 8 kHz.
        """
        pad = (-len(self._pending)) % 3 + (self._taps - 1) // 2
        tail = self.feed_samples(np.zeros(pad))
        self.reset()
        return _to_pcm16(tail)

    def reset(self) -> None:
        """Forget all history, as if newly made."""
        self._history[:] = 0.0
        self._pending = _PHASE.copy()
        self._odd = b""
