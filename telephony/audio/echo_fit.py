"""Is the caller talking over a short echo path? A least-squares fit of the echo waveform.

The echo judge (:class:`~telephony.audio.echo_judge.EchoJudge`) compares band powers, and
before it has learned a line (about 1.3 s of the agent's audio) a loose prior stands in: a
caller no louder than the agent's echo plus a margin is taken for echo. On a line hybrid with
6 dB of echo return loss (the least ITU-T G.168 allows a network) that is every caller of a
natural level, so "Wait, stop" 0.5 s into a reply was not heard (a bench run: not honoured at
all over the G.168 hybrids; measured offline, the band powers of the caller over the echo and
of the echo alone overlap at every threshold).

A line hybrid's echo is a short linear filter of what played (the G.168 models are under 8 ms
long) at one bulk delay, which the presence test (:class:`~telephony.audio.echo_delay.
EchoDelay`) finds within the first loud frames. Fitted by least squares on the waveforms at
that delay, 128 taps from 2 ms before it, the echo is explained to its μ-law quantisation noise
within a few frames (the residual 33-37 dB under the estimate on all eight G.168 hybrids and
flat paths, from the 256 ms the presence test already holds), and a caller's voice is what the
fit does not explain: over the echo it leaves a residual about as loud as the estimate (median
+1 to +9 dB) at any level of the caller. A long path (a room of T60 0.2 s or more, a clipping
handset) is not fitted that closely (residual 5-10 dB under the estimate): the fit then says
nothing and the judge decides alone.

The fit learns only from frames it does not call the caller's, and runs only until the judge
has learned the line (its CPU is about 0.1 ms a frame).

Knows nothing of Twilio or OpenAI. Formats: float sample values of pcm16, 8 kHz, 20 ms frames.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ShortEchoFit"]

FRAME = 160  # samples in 20 ms
TAPS = 128  # 16 ms of path: the G.168 hybrids are under 8 ms long
LEAD = 16  # taps before the found delay (2 ms: the peak of a dispersive path may be late)
HISTORY_FRAMES = 12  # frames before the newest that seed a new fit (the presence test's 256 ms)
FIT_DB = -15.0  # the fit explains the echo when its residual is this far under its estimate
FIT_FRAMES = 3  # over at least this many loud frames of echo
DECAY = 0.9  # per loud frame, of the fit's residual and estimate sums
CALLER_DB = -10.0  # a frame's residual this close to its estimate is the caller's voice
ABOVE_FIT_DB = 10.0  # and at least this far above the fit's own residual
LEARN_ABOVE_DB = 3.0  # a loud frame this far above the fit's residual does not teach it
SETTLED_DB = -25.0  # a fit this close stops learning (its solve is most of its CPU)
GIVE_UP_FRAMES = 25  # loud frames without a fit (a long path, no echo at all): it stops
FAR_SILENT = 100.0  # mean square of what played that is silence (about -70 dBFS)
GAP_FRAMES = 5  # what plays after a gap this long (100 ms) is a new run (see _follow_runs)
SEARCH = 160  # samples either way a new run's echo is looked for (20 ms: a frame of the clock)
ALIGN_TRIES = 10  # loud frames of a new run's echo without an alignment: fit it anew
MAX_TALK_FRAMES = 150  # 3 s of frames called the caller's in a row: the fit begins again
RIDGE = 1e-3  # of the fit's mean input power: regularises the solve of a young fit
LOUD = 150.0**2  # mean square of a frame loud enough to judge (about -47 dBFS)
MEASURED = 32.0**2  # and to count in the fit's residual and estimate sums (about -60 dBFS)


class ShortEchoFit:
    """One call's least-squares fit of a short echo path at the line's bulk delay.

    Feed each judged frame with the aligned histories the presence test keeps
    (:meth:`frame`); once the fit explains the echo (:attr:`fits`) it says whether the newest
    frame holds the caller's voice over it.
    """

    def __init__(self) -> None:
        self._lag: int | None = None  # samples: the presence test's lag it began at, less LEAD
        self._delay = 0  # samples, the fit's first tap (moved as runs are aligned)
        self._quiet = 0  # frames in a row nothing played
        self._unaligned: int | None = None  # frames until a new run's echo (then: align it)
        self._tries = 0  # loud frames of a new run's echo the fit could not be aligned to
        self._taught = 0  # frames the fit learned from
        self._unfit = 0  # loud frames since it last fitted, fits begun again included
        self._r = np.zeros((TAPS, TAPS))  # sum of X^T X over the frames it learned from
        self._p = np.zeros(TAPS)  # sum of X^T y
        self._h = np.zeros(TAPS)
        self._residual = 0.0  # decayed sums over loud frames of echo
        self._estimate = 0.0
        self._loud = 0  # loud frames of echo since the fit began
        self._talk = 0  # frames in a row called the caller's
        self.resets = 0  # fits begun again (at a new delay, or after 3 s of "caller")
        self.gave_up = False  # a long path the fit cannot explain: it says nothing more

    @property
    def fits(self) -> bool:
        """True once the fit explained the echo of :data:`FIT_FRAMES` loud frames to within
        :data:`FIT_DB` (decayed sums of residual and estimate power)."""
        return self._loud >= FIT_FRAMES and self._ratio() < 10 ** (FIT_DB / 10)

    def _ratio(self) -> float:
        return self._residual / self._estimate if self._estimate > 0.0 else np.inf

    def frame(self, near: np.ndarray, far: np.ndarray, delay_ms: float) -> bool:
        """True when the newest 20 ms of ``near`` holds sound the fitted echo does not explain,
        :data:`CALLER_DB` or closer to the echo estimate, and the fit :attr:`fits`.

        Args:
            near: the caller's audio, float pcm16 sample values, 8 kHz, the newest frame last.
            far: what played, sample-aligned with ``near`` (the same length; ``far[i]`` played
                while ``near[i]`` was captured).
            delay_ms: the echo's bulk delay (the presence test's :attr:`~telephony.audio.
                echo_delay.EchoDelay.lag_ms`), ms.

        Raises:
            ValueError: ``near`` and ``far`` differ in length, or are shorter than one frame
                plus the delay and the fit's taps.
        """
        if len(near) != len(far):
            raise ValueError("near and far must be aligned histories of the same length")
        if self.gave_up:
            return False
        delay = max(round(delay_ms * 8) - LEAD, 0)  # no tap before what played with the frame
        if len(near) < FRAME + delay + TAPS:
            raise ValueError("the histories are shorter than a frame, the delay and the taps")
        if self._lag is None or abs(delay - self._delay) > SEARCH:
            # a move of the peak within the search is aligned run by run; a larger one after
            # the first fit is the echo moved (the history holds it at both lags: no seed)
            self._begin(near, far, delay, seed=self._lag is None)
        self._follow_runs(far)
        end = len(near)
        y = near[end - FRAME :]
        if self._unaligned is not None and self._unaligned <= 0:
            # the echo of a new run of what played has arrived: find where the fit's echo
            # sits in it before the fit says or learns anything
            if not self._align(near, far, y):
                return False
        delay = self._delay
        x = self._inputs(far, end - FRAME, delay)
        estimate = x @ self._h
        residual = y - estimate
        pe, py, pn = (float(np.mean(v * v)) for v in (residual, estimate, y))
        ratio, loud = self._ratio(), pn >= LOUD
        # the line's noise, which no fit explains: the quietest frame the history holds
        last = near[len(near) - len(near) // FRAME * FRAME :]
        floor = float(np.min(np.mean(np.reshape(last * last, (-1, FRAME)), axis=1)))
        if self.fits:
            # unexplained sound: the caller's when well above the fit's own residual and the
            # line's noise; a frame a little above them teaches the fit nothing either (a
            # caller's quiet onset)
            above, least = 10 ** (ABOVE_FIT_DB / 10), 10 ** (CALLER_DB / 10)
            caller = loud and pe > max(least, above * ratio) * py + above * floor
            learn = not (loud and pe > 10 ** (LEARN_ABOVE_DB / 10) * (ratio * py + floor))
        else:
            caller, learn = False, True
        if caller and self._shifted(near, far, y):
            caller = learn = False  # the echo moved a little (the fit moved with it)
        self._talk = self._talk + 1 if caller else 0
        if self._talk > MAX_TALK_FRAMES:  # no caller talks this long over the agent: the
            self._begin(near, far, self._lag, seed=False)  # path changed under the fit
            return False
        if learn:
            if pn >= MEASURED:
                self._residual = DECAY * self._residual + pe
                self._estimate = DECAY * self._estimate + py
                self._loud += 1
            if not (self.fits and self._ratio() < 10 ** (SETTLED_DB / 10)):
                self._learn(x, y)
        self._unfit = 0 if self.fits else self._unfit + loud
        if self._unfit >= GIVE_UP_FRAMES:
            self.gave_up = True
            self._r = self._p = self._h = np.zeros(0)
        return caller

    def _follow_runs(self, far: np.ndarray) -> None:
        """Count the frames until the echo of a new run of what played (after a gap of
        :data:`GAP_FRAMES`) reaches the line: the playout reference places each run from its
        mark echoes, on the caller's 20 ms clock, so a run may sit a few ms from the last."""
        if float(np.mean(far[-FRAME:] ** 2)) < FAR_SILENT:
            self._quiet += 1
        else:
            if self._quiet >= GAP_FRAMES and self._taught:
                self._unaligned = -(-(self._delay + TAPS) // FRAME)  # frames until its echo
            self._quiet = 0
        if self._unaligned is not None and self._unaligned > 0:
            self._unaligned -= 1

    def _align(self, near: np.ndarray, far: np.ndarray, y: np.ndarray) -> bool:
        """Move the fit to the shift (within :data:`SEARCH` samples) that explains the newest
        frame best; True once one explains it to within :data:`FIT_DB` (then the run is
        aligned), False while none does (a quiet frame, the caller talking)."""
        if float(np.mean(y * y)) < LOUD:
            return False
        self._unfit += not self.fits
        self._tries += 1
        if self._shifted(near, far, y):
            self._unaligned = None
            self._tries = 0
            return True
        if self._tries >= ALIGN_TRIES:  # nowhere near: fit this run anew
            self._begin(near, far, self._lag or 0, seed=False)
        return False

    def _shifted(self, near: np.ndarray, far: np.ndarray, y: np.ndarray) -> bool:
        """True, the fit moved there, when the fit's echo shifted by at most :data:`SEARCH`
        samples explains the newest frame ``y`` to within :data:`FIT_DB`: what played sits a
        little from where the fit had it (the reference places runs on a 20 ms clock, and a
        loaded server reads mark echoes late), not a caller's voice, which no shift explains."""
        end = len(near)
        # the fit's echo from SEARCH samples before the frame to SEARCH after it; the echo
        # s samples later than the fit's is window SEARCH - s of it
        wide = self._inputs(far, end - FRAME - SEARCH, self._delay, FRAME + 2 * SEARCH)
        windows = np.lib.stride_tricks.sliding_window_view(wide @ self._h, FRAME)
        errors = np.sum((windows - y) ** 2, axis=1)
        best = int(np.argmin(errors))
        power = float(np.sum(windows[best] ** 2))
        if power > 0.0 and errors[best] < 10 ** (FIT_DB / 10) * power:
            self._delay = max(self._delay + SEARCH - best, 0)
            return True
        return False

    def _begin(self, near: np.ndarray, far: np.ndarray, delay: int, seed: bool = True) -> None:
        """A new fit at ``delay``, from the frames before the newest the histories hold when
        ``seed``."""
        if self._lag is not None:
            self.resets += 1
        self._lag = self._delay = delay
        self._unaligned, self._tries, self._taught = None, 0, 0
        self._r[:] = 0.0
        self._p[:] = 0.0
        self._h[:] = 0.0
        self._residual = self._estimate = 0.0
        self._loud = self._talk = 0
        end = len(near) - FRAME
        first = max(end - HISTORY_FRAMES * FRAME, delay + TAPS - 1)
        if seed and first < end:
            x = self._inputs(far, first, delay, end - first)
            self._r += x.T @ x
            self._p += x.T @ near[first:end]
            self._taught = (end - first) // FRAME
            self._solve()

    def _inputs(self, far: np.ndarray, start: int, delay: int, n: int = FRAME) -> np.ndarray:
        """Rows ``far[i - delay - k]`` for ``k`` in ``0..TAPS-1``, ``i`` from ``start`` on,
        shape (n, TAPS); what lies before or after ``far`` counts as silence."""
        lo, hi = start - delay - TAPS + 1, start + n - delay
        span = far[max(lo, 0) : min(hi, len(far))]
        if lo < 0 or hi > len(far):
            span = np.concatenate([np.zeros(max(-lo, 0)), span, np.zeros(max(hi - len(far), 0))])
        return np.lib.stride_tricks.sliding_window_view(span, TAPS)[:, ::-1]

    def _learn(self, x: np.ndarray, y: np.ndarray) -> None:
        self._taught += 1
        self._r += x.T @ x
        self._p += x.T @ y
        self._solve()

    def _solve(self) -> None:
        ridge = RIDGE * float(np.trace(self._r)) / TAPS + 1e3
        self._h = np.linalg.solve(self._r + ridge * np.eye(TAPS), self._p)
