"""Is a caller frame more than the agent's own echo? A per-frame judge in the power domain.

The caller's line may send back what their phone played (a line hybrid, a speakerphone), 6 to
30 dB down, 20-500 ms late, smeared by the room. We know what played and when (the playout
reference, on the caller's audio clock), so each caller frame can be compared with the echo
that audio could make:

- Both frames are split into 13 bands (250-3500 Hz, a 256-point FFT over 32 ms).
- The echo of each band is estimated from the last :data:`LAGS` frames of what played (0-780
  ms): ``E[b] = sum_k H[k, b] * F[t - k, b]``, ``H`` learned per call by normalised LMS on band
  powers, and only from frames judged echo (a caller's speech does not teach it).
- Until ``H`` has learned from :data:`LEARN_FRAMES` frames of the agent's audio, a prior
  stands in: the loudest band power that played within the window, :data:`PRIOR_ERL_DB` down
  (the worst echo return loss ITU-T G.168 allows a network, 6 dB, with a 3 dB margin).
- A frame is the caller's own sound when its power beyond the estimated echo (with a margin,
  :data:`MARGIN_DB`) is a large enough share of it, summed over bands.

The per-frame work runs in the compiled audio core (``_fir.echo_frame``, about a tenth of the
numpy path's time) when it is installed; the numpy path below is its reference and fallback, and
a test holds the two to the same verdicts on real echo.

Knows nothing of Twilio or OpenAI. Formats: pcm16 little-endian mono, 8 kHz, 20 ms frames.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

try:  # the optional compiled loop (see telephony/audio/_fir.c)
    from . import _fir
except ImportError:  # pragma: no cover - depends on the install
    _fir = None
# None too for an extension built before echo_frame existed (an editable install not rebuilt)
_ECHO_FRAME = getattr(_fir, "echo_frame", None)

__all__ = ["EchoJudge"]

FRAME = 160  # samples in 20 ms
FFT = 256
LAGS = 40  # far-end frames the echo may come from: 0-780 ms
LEARN_FRAMES = 25  # frames of the agent's audio, beyond LAGS, before the path is trusted
PRIOR_ERL_DB = 3.0  # before that: echo may be this close to the loudest audio that played
MARGIN_DB = 6.0  # caller power must beat the estimated echo by this much to count
STEP = 0.3  # NLMS step
SHARE = 0.3  # unexplained share of the frame's power that makes it the caller's
LEARN_SHARE = 0.1  # a frame teaches the path only when this little of it is unexplained
HOLD_FRAMES = 15  # and not within 300 ms of a frame judged the caller's (double talk)
_EDGES = np.arange(8, 120, 8)  # FFT bins: 250, 500, ... 3500 Hz (31.25 Hz a bin)


class EchoJudge:
    """One call's echo judge. Feed every caller frame with what played over the same 20 ms
    (:meth:`frame`); it says whether the caller made a sound beyond the echo.

    Args:
        backend: ``"auto"`` (the compiled loop when installed), ``"c"`` (raises RuntimeError
            when it is not) or ``"numpy"``.
    """

    def __init__(self, backend: Literal["auto", "c", "numpy"] = "auto") -> None:
        if backend == "c" and _ECHO_FRAME is None:
            raise RuntimeError("the compiled audio loop (telephony.audio._fir) is not installed")
        self._c = backend != "numpy" and _ECHO_FRAME is not None
        bands = len(_EDGES) - 1
        # band powers of what played, newest first: LAGS rows of a buffer twice as long,
        # written upwards from the bottom; the window moves to the top half once it reaches
        # row 0 (one copy every LAGS frames instead of a shift every frame)
        self._ring = np.zeros((2 * LAGS, bands))
        self._pos = 0
        self._h = np.zeros((LAGS, bands))
        self._block = np.zeros((2, FFT))  # near and far, the last 96 samples of each before
        self._window = np.hanning(FFT)
        self._learned = 0  # frames the path learned from while the agent's audio played
        self._prior = 10 ** (-PRIOR_ERL_DB / 10)
        self._margin = 10 ** (MARGIN_DB / 10)
        self._since_caller = HOLD_FRAMES
        self.echo_frames = 0  # frames judged the agent's echo (sound explained by it)
        self.share = 0.0  # the last frame's power beyond the estimated echo, a share of it

    @property
    def learned(self) -> bool:
        """True once the echo path has learned from ``LAGS + LEARN_FRAMES`` frames of the
        agent's audio (the prior no longer stands in): its verdicts rest on this line's echo."""
        return self._learned >= LAGS + LEARN_FRAMES

    @property
    def _far(self) -> np.ndarray:
        return self._ring[self._pos : self._pos + LAGS]

    def idle(self, frames: int) -> None:
        """``frames`` 20 ms frames passed unjudged (nothing played, nothing to judge): what
        played before them moves that much further back."""
        for _ in range(min(max(frames, 0), LAGS)):
            self._push(np.zeros(self._ring.shape[1]))

    def _push(self, far: np.ndarray) -> None:
        if self._pos == 0:  # the window moves to the top half, its newest row at LAGS
            self._ring[LAGS:] = self._ring[:LAGS]
            self._pos = LAGS
        self._pos -= 1
        self._ring[self._pos] = far

    def frame(self, near: bytes, far: bytes) -> bool:
        """True when ``near`` (the caller's 20 ms, pcm16 8 kHz bytes) holds sound beyond the
        echo of what played; ``far`` is what played over the same 20 ms (the same length).

        Raises:
            ValueError: either is not 320 bytes.
        """
        if len(near) != 2 * FRAME or len(far) != 2 * FRAME:
            raise ValueError("near and far must each be one 20 ms frame (320 bytes)")
        if self._c:
            return self._frame_c(near, far)
        block = self._block
        block[:, : FFT - FRAME] = block[:, FRAME:]
        block[0, FFT - FRAME :] = np.frombuffer(near, dtype="<i2")
        block[1, FFT - FRAME :] = np.frombuffer(far, dtype="<i2")
        spectrum = np.fft.rfft(block * self._window, axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        bands = np.add.reduceat(power[:, : _EDGES[-1]], _EDGES[:-1], axis=1)
        n = bands[0]
        self._push(bands[1])
        far_bands = self._far
        prior = self._prior * far_bands.max(axis=0)  # the loudest echo the window allows
        estimate = np.einsum("kb,kb->b", self._h, far_bands)
        bound = self._margin * estimate
        if not self.learned:  # the path has not been heard at every lag
            bound = np.maximum(bound, prior)
        total = float(n.sum())
        beyond = float(np.maximum(n - bound, 0.0).sum())
        self.share = beyond / total if total > 0.0 else 0.0
        caller = self.share > SHARE
        self._since_caller = 0 if caller else self._since_caller + 1
        # learn only from frames that are echo alone: well explained, not near the caller's
        # speech, and no louder than the loudest echo possible (a caller's word the judge
        # missed must not teach the path)
        quiet_caller = self._since_caller >= HOLD_FRAMES and self.share < LEARN_SHARE
        if quiet_caller and total <= float(prior.sum()) and prior.any():
            self._learn(np.minimum(n, prior), estimate)
            self.echo_frames += total > 0.0
        return caller

    def _frame_c(self, near: bytes, far: bytes) -> bool:
        """:meth:`frame` in the compiled loop: the same steps on the same state arrays."""
        assert _ECHO_FRAME is not None
        self._pos, self.share, self._since_caller, taught = _ECHO_FRAME(
            self._block, self._ring, self._h, self._window, near, far, self._pos,
            self.learned, self._since_caller, self._prior, self._margin, STEP, SHARE,
            LEARN_SHARE, HOLD_FRAMES,
        )  # fmt: skip
        if taught:
            self._learned += 1
            self.echo_frames += taught == 2
        return self.share > SHARE

    def _learn(self, n: np.ndarray, estimate: np.ndarray) -> None:
        """One NLMS step of the band-power echo path towards ``n`` (a frame judged echo)."""
        far = self._far
        norm = np.einsum("kb,kb->b", far, far) + 1e-9
        self._h += far * (STEP * (n - estimate) / norm)
        np.maximum(self._h, 0.0, out=self._h)
        self._learned += 1
