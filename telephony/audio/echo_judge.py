"""Is a caller frame more than the agent's own echo? A per-frame judge in the power domain.

The caller's line may send back what their phone played (a line hybrid, a speakerphone), 6 to
30 dB down, 20-500 ms late, smeared by the room. We know what played and when (the playout
reference, on the caller's audio clock), so each caller frame can be compared with the echo
that audio could make:

- Both frames are split into 13 bands (250-3500 Hz, a 256-point FFT over 32 ms).
- The echo of each band is estimated from the last :data:`LAGS` frames of what played (0-780
  ms): ``E[b] = sum_k H[k, b] * F[t - k, b]``, ``H`` learned per call by normalised LMS on band
  powers, and only from frames judged echo (a caller's speech does not teach it).
- Until ``H`` has learned from :data:`LEARN_FRAMES` frames of the agent's audio, and its
  echo follows the line (a caller quieter than the agent teaches it too; see ``_check``), a
  prior stands in: the loudest band power that played within the window,
  :data:`PRIOR_ERL_DB` down (the worst echo return loss ITU-T G.168 allows a network, 6 dB,
  with a 3 dB margin). It stands only on a line where the agent's echo has been found at
  all (:class:`~telephony.audio.echo_delay.EchoDelay`, a waveform cross-correlation, asked of
  each loud frame until it finds a peak): on a line with no echo found, a loud frame is judged
  by the path alone, so a caller who talks over the agent's first words is heard. Where it
  has, a waveform fit at its delay (:class:`~telephony.audio.echo_fit.EchoFit`) hears a
  caller over a short path's echo (a line hybrid's) from their first frames.
- A frame is the caller's own sound when its power beyond the estimated echo (with a margin,
  :data:`MARGIN_DB`) is a large enough share of it, summed over bands.

The per-frame work runs in the compiled audio core (``_fir.echo_frame``, about a tenth of the
numpy path's time) when it is installed; the numpy path below is its reference and fallback, and
a test holds the two to the same verdicts on real echo.

Knows nothing of Twilio or OpenAI. Formats: pcm16 little-endian mono, 8 kHz, 20 ms frames.
"""

from __future__ import annotations

import warnings
from collections import deque
from typing import Literal

import numpy as np

from .echo_delay import EchoDelay
from .echo_fit import EchoFit

try:  # the optional compiled loop (see telephony/audio/_fir.c)
    from . import _fir
except ImportError:  # pragma: no cover - depends on the install
    _fir = None
# None too for an extension built before echo_frame took its present arguments (ECHO_ABI 2;
# an editable install not rebuilt)
_ECHO_FRAME = getattr(_fir, "echo_frame", None) if getattr(_fir, "ECHO_ABI", 0) == 2 else None

__all__ = ["EchoJudge", "band_powers", "cap_from"]

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
EARLY_FRAMES = 150  # frames judged under the prior kept for review: 3 s
COHERENCE = 0.75  # the learned path's echo must follow the line this closely (see _check)
REFINE_PASSES = 1  # replays of the kept frames that refine a path once it is trusted
LINE_FLOOR = 1e8  # band power of white line noise at -50 dBFS: quieter is no sound
CAP_MARGIN_DB = 6.0  # the cap on the prior (see cap_from) sits this far above the quiet line
CAP_PERCENTILE = 10  # of the ratios line / what played, per lag and band (see cap_from)
CAP_LOUD = 0.01  # only what played within 20 dB of its loudest counts
CAP_FRAMES = 10  # fewer such frames at a lag: no cap there
NO_CAP = 1e30  # a cap that holds nothing back (finite: times a silent lag it is 0)
_EDGES = np.arange(8, 120, 8)  # FFT bins: 250, 500, ... 3500 Hz (31.25 Hz a bin)


class EchoJudge:
    """One call's echo judge. Feed every caller frame with what played over the same 20 ms
    (:meth:`frame`); it says whether the caller made a sound beyond the echo.

    Args:
        backend: ``"auto"`` (the compiled loop when installed), ``"c"`` (raises RuntimeError
            when it is not) or ``"numpy"``.
        early_fit: run the early echo fit (:class:`~telephony.audio.echo_fit.EchoFit`) while
            the path has not been learned.
    """

    def __init__(
        self, backend: Literal["auto", "c", "numpy"] = "auto", early_fit: bool = True
    ) -> None:
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
        self._cap = np.full((LAGS, bands), NO_CAP)  # see cap_from
        self._block = np.zeros((2, FFT))  # near and far, the last 96 samples of each before
        self._window = np.hanning(FFT)
        self._learned = 0  # frames the path learned from while the agent's audio played
        self._trusted = False  # the learned path passed its check (see _check)
        self._verdicts: list[bool] | None = None  # the early frames judged again, for review
        self.presence = EchoDelay()  # is the echo on the line at all (until trusted)
        # and, at its delay, a caller over it
        self.fit = EchoFit("c" if self._c else "numpy") if early_fit else None
        self.restarts = 0  # learned paths that failed their check and were begun again
        self._prior = 10 ** (-PRIOR_ERL_DB / 10)
        self._margin = 10 ** (MARGIN_DB / 10)
        self._since_caller = HOLD_FRAMES
        self._idle = 0  # frames passed unjudged since the last judged one
        # (idle frames before, near, far) of frames judged under the prior; None once reviewed
        self._early: deque[tuple[int, bytes, bytes]] | None = deque(maxlen=EARLY_FRAMES)
        self.echo_frames = 0  # frames judged the agent's echo (sound explained by it)
        self.share = 0.0  # the last frame's power beyond the estimated echo, a share of it

    @property
    def learned(self) -> bool:
        """True once the echo path has learned from ``LAGS + LEARN_FRAMES`` frames of the
        agent's audio and passed its check (the prior no longer stands in): its verdicts rest
        on this line's echo."""
        return self._trusted

    @property
    def echo_found(self) -> bool:
        """True once the presence test has found the agent's echo on the line (it runs until
        the path is trusted): a frame the prior judges echo then is the agent's own sound, not
        a caller the prior cannot tell from it."""
        return self.presence.seen

    @property
    def _far(self) -> np.ndarray:
        return self._ring[self._pos : self._pos + LAGS]

    def idle(self, frames: int) -> None:
        """``frames`` 20 ms frames passed unjudged (nothing played, nothing to judge): what
        played before them moves that much further back."""
        self._idle += max(frames, 0)
        if not self._trusted:
            self.presence.idle(frames)
        for _ in range(min(max(frames, 0), LAGS)):
            self._push(np.zeros(self._ring.shape[1]))

    def moved(self) -> None:
        """What played was placed anew on the caller's clock (a new run of the agent's audio,
        or a run a mark echo moved): the early echo fit, aligned to the samples, must explain
        the echo again before its verdicts count (:meth:`EchoFit.unsettle`)."""
        if self.fit is not None:
            self.fit.unsettle()

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
        if self._early is not None and not self._trusted:
            self._early.append((self._idle, near, far))
        self._idle = 0
        # before the path is trusted, the prior stands only where the echo has been found
        no_prior, teach, fitted = self._trusted, True, False
        if not self._trusted:
            presence = self.presence
            presence.push(near, far)
            no_prior = presence.not_echo()
            if presence.delay_ms is not None and self.fit is not None:  # a caller over a hybrid
                lag = round(presence.delay_ms * 8)
                loud, heard = presence.loud(), presence.heard()
                fitted = self.fit.frame(presence.near, presence.far, loud, lag, heard)
                no_prior = no_prior or fitted
            # a sound not known to be echo teaches the path nothing (a caller's word before
            # the test has settled on it), and does not hold back learning after it either
            teach = not (no_prior or (not presence.seen and presence.loud()))
        since = self._since_caller
        if not teach:
            self._since_caller = -1  # under HOLD_FRAMES after this frame: no step of the path
        if self._c:
            caller = self._frame_c(near, far, no_prior)
        else:
            caller = self._frame_numpy(near, far, no_prior)
        caller = caller or fitted  # the band path, still learning, may explain part of it
        if not teach and not caller:
            self._since_caller = since + 1
        if not self._trusted and self._learned >= LAGS + LEARN_FRAMES:
            self._check()
        return caller

    def _frame_numpy(self, near: bytes, far: bytes, no_prior: bool) -> bool:
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
        if not no_prior:  # the path has not been heard at every lag
            most = np.einsum("kb,kb->b", self._cap, far_bands)
            bound = np.maximum(bound, np.minimum(prior, most))
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

    def review(self) -> list[bool] | None:
        """Once the path has learned (:attr:`learned`), the verdicts of the frames judged under
        the prior before (the last :data:`EARLY_FRAMES` of them, oldest first), judged again
        with the learned path: True where the caller made a sound beyond the echo. Given once;
        None before the path has learned and after the review."""
        verdicts, self._verdicts = self._verdicts, None
        return verdicts

    def _check(self) -> None:
        """The path has learned from enough frames: is it this line's echo? A caller quieter
        than the agent, talking while it learned, is under the prior and teaches the path too
        (the offline model's greeting talked over: 118 frames); such a path would call the
        caller's words echo. A copy of the judge with the learned path replays the frames kept
        (the last :data:`EARLY_FRAMES`), and the path is trusted when

        - its echo estimate follows the line: the correlation of the frames' log power
          (each plus :data:`LINE_FLOOR`) with the estimate's is at least :data:`COHERENCE`
          (measured on the agent's real reply: 0.81-0.99 over flat paths of 6-30 dB and
          20-450 ms, the G.168 hybrids, rooms and a clipping handset; 0.15-0.64 over callers
          talking over it with no echo), over all the frames or over those the replay calls
          echo (a path learned after a caller talked over a 6 dB hybrid, from a window of
          continuous echo with a few frames it calls the caller's: 0.47-0.74 over all of
          them, 0.81-0.95 over those; with all of them alone, checks failed 2-7 times in a
          row and the line was learned 5-10 s into the reply, or not at all), or
        - it is too weak to hide a caller: 95 % of its estimates are under three times the
          line's quiet level (its 10th percentile) plus the floor (a line with no echo: noise
          or digital silence; a path taught by a caller's quiet syllables is above it).

        Otherwise the path is begun again from nothing (``restarts``), the prior standing in,
        held under what the line's quiet frames allow (:func:`cap_from`): a caller who talked
        while it learned is heard over a line with no echo while it learns again. When it is
        trusted the replay's verdicts are kept for :meth:`review`, and it takes the path the
        replay learned on to, then :data:`REFINE_PASSES` more replays' (each learning from
        the frames it calls echo alone): a path whose learning a frame called the caller's
        held back, such as a G.168 D7 hybrid's first echo before the presence test found it,
        learned from too few frames of the agent's voice and called 20-60 later frames of
        echo alone the caller's, two of them pausing the reply. The check and the review
        judge with the path as learned: refined, it would explain more of a caller who
        talked while it learned."""
        early = list(self._early or ())
        again, verdicts, blocks, estimates, windows = self._replay(early)
        near_bands = band_powers(np.asarray(blocks))
        line = near_bands.sum(axis=1)
        echo = np.asarray(estimates)
        a, b = np.log10(line + LINE_FLOOR), np.log10(echo + LINE_FLOOR)
        alone = ~np.asarray(verdicts, dtype=bool)  # the frames it calls echo
        coherent = _follows(a, b) or _follows(a[alone], b[alone])
        weak = np.percentile(echo, 95) <= 3 * np.percentile(line, 10) + LINE_FLOOR
        if coherent or weak:
            self._trusted = True
            self._h[:] = again._h  # the replay went on learning from the frames it called echo
            for _ in range(REFINE_PASSES):
                self._h[:] = self._replay(early)[0]._h
            self.presence.release()
            self._verdicts = verdicts if self._early is not None else None
            self._early = None
        else:
            self._h[:] = 0.0
            self._learned = 0
            self.restarts += 1
            np.minimum(self._cap, cap_from(near_bands, np.asarray(windows)), out=self._cap)

    def _replay(
        self, early: list[tuple[int, bytes, bytes]]
    ) -> tuple[EchoJudge, list[bool], list[np.ndarray], list[float], list[np.ndarray]]:
        """A trusted copy of this judge, its path as learned so far, judges ``early`` (the
        frames kept: idle frames before, near, far) again, learning on as it goes from those it
        calls echo alone. Returns the copy, its verdicts, and per frame its near block (the 32
        ms up to the frame's end), its echo estimate (summed over bands) and its window of
        what played (shape (LAGS, bands))."""
        again = EchoJudge(backend="c" if self._c else "numpy", early_fit=False)
        again._early = None
        again._h = self._h.copy()
        again._trusted = True
        again.presence.release()
        verdicts, blocks, estimates, windows = [], [], [], []
        for idle, near, far in early:
            again.idle(idle)
            verdicts.append(again.frame(near, far))
            estimates.append(float(np.einsum("kb,kb->", again._h, again._far)))
            blocks.append(again._block[0].copy())
            windows.append(again._far.copy())
        return again, verdicts, blocks, estimates, windows

    def _frame_c(self, near: bytes, far: bytes, no_prior: bool) -> bool:
        """:meth:`frame` in the compiled loop: the same steps on the same state arrays."""
        assert _ECHO_FRAME is not None
        self._pos, self.share, self._since_caller, taught = _ECHO_FRAME(
            self._block, self._ring, self._h, self._cap, self._window, near, far, self._pos,
            no_prior, self._since_caller, self._prior, self._margin, STEP, SHARE,
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


def _follows(line: np.ndarray, echo: np.ndarray) -> bool:
    """Log band powers of a line and of its echo estimate, frame by frame, correlate by at
    least :data:`COHERENCE` (False for fewer than 2 frames or either constant)."""
    if len(line) < 2 or line.std() <= 1e-6 or echo.std() <= 1e-6:
        return False
    return bool(np.corrcoef(line, echo)[0, 1] >= COHERENCE)


def band_powers(blocks: np.ndarray) -> np.ndarray:
    """Band powers as the judge takes them: ``blocks`` of shape (frames, 256), pcm16 sample
    values of the 32 ms up to each frame's end, Hann-windowed, 13 bands of 250 Hz from 250 to
    3500 Hz; returns shape (frames, 13)."""
    power = np.abs(np.fft.rfft(blocks * np.hanning(FFT), axis=1)) ** 2
    return np.add.reduceat(power[:, : _EDGES[-1]], _EDGES[:-1], axis=1)


def cap_from(near: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """The most echo a line's frames allow, per lag and band, from frames while the agent played.

    A frame's echo is no louder than the frame: ``h[k, b] * windows[t, k, b] <= near[t, b]``
    for every frame ``t`` of an echo path ``h``. So a line that was quiet (or noise alone,
    :data:`LINE_FLOOR`) while the agent's audio played loud ``k`` frames before has no strong
    echo at lag ``k``, and the echo of what plays is at most ``sum_k cap[k, b] * far[k, b]``.
    Band powers of 20 ms frames follow each other only roughly, so the bound is not the least
    ratio but its :data:`CAP_PERCENTILE` th percentile over frames where what played was within
    20 dB of its loudest (:data:`CAP_LOUD`), :data:`CAP_MARGIN_DB` above. Measured with every
    check failing (the capped prior standing in all call) on the 9.9 s reply: over flat paths
    of 6-15 dB at 150/450 ms, hybrids D3/D5/D7, rooms and a clipping handset it calls at most 5
    more echo frames the caller's than the prior alone (0-15 a call); over a line with no echo
    it hears 67-76 % of a caller's speech frames at 0 to -10 dB (the prior: none of a caller
    quieter than the agent). ``tests/audio/test_echo_judge.py`` holds both.

    Args:
        near: band powers of the caller's frames, shape (frames, bands).
        windows: what played before each of them, shape (frames, LAGS, bands), newest first.

    Returns:
        ``cap``, shape (LAGS, bands); :data:`NO_CAP` at a lag and band with fewer than
        :data:`CAP_FRAMES` loud frames.
    """
    floor = LINE_FLOOR / near.shape[1]
    loud = windows > CAP_LOUD * windows.max(axis=0)  # what played loud, per lag and band
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN lag: capped below
        ratio = np.where(loud, (near[:, None, :] + floor) / windows, np.nan)
        low = np.nanpercentile(ratio, CAP_PERCENTILE, axis=0)
    enough = loud.sum(axis=0) >= CAP_FRAMES
    return np.where(enough, np.minimum(low * 10 ** (CAP_MARGIN_DB / 10), NO_CAP), NO_CAP)
