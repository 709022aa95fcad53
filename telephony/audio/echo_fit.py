"""A caller talking over the agent's first words on a line hybrid: a waveform fit of its echo.

Before the echo judge has learned a line (:class:`~telephony.audio.echo_judge.EchoJudge`,
about 1.3 s of the agent's audio), its prior takes anything up to the loudest audio that played
in the last 780 ms, 3 dB down, for echo, and the presence test
(:class:`~telephony.audio.echo_delay.EchoDelay`) tells a caller over echo only once their
voice has filled most of its 256 ms window. Over a 6 dB line hybrid (the loudest echo ITU-T
G.168 allows a network) a caller who said "Wait, stop, I have a question." half a second into
the reply was heard 0.7-1.9 s after their first word, or not at all.

A hybrid's echo is a short linear filter of what played (the G.168 Annex D models: 64-128
taps at 8 kHz) behind a bulk delay, and the presence test finds that delay from the first
frames of echo. So once it has, this fit learns the waveform path over :data:`TAPS` taps
around the delay by normalised LMS (first over the echo already heard, several passes), and
a loud frame whose power the fitted echo leaves mostly unexplained, on a fit that explained
the line's echo alone (the residual under :data:`CONVERGED` of it), holds the caller's voice.
Where the path is longer than the fit (a room's reverberation) the fit never explains the
echo, says nothing, and the line is judged as before.

Measured through the barge-in guard (``tests/bridge/test_barge_in.py``'s line model, "Wait,
stop..." 0.5-1.0 s into the 9.9 s reply, the eight G.168 hybrids at 6 dB and 300 ms): the
first pause 100-160 ms after the caller's first word on D2-D6 at every onset, and on D7-D9
from 0.52-0.6 s on (0.2-1.9 s, or none, before); the whole reply's echo alone pauses nothing
on any of them, nor on flat paths or rooms.

On a quiet line (digital silence around the echo, no line noise) the fit converges on the
echo's quieter frames too (the presence test's :meth:`~telephony.audio.echo_delay.EchoDelay.
heard`), so a caller 160-180 ms into a hybrid's first echo, where it had heard only 4-5 loud
frames of echo alone, is heard at once; over -50 dBFS line noise nothing changes. A loud
frame it leaves :data:`OVERSHOOT` times its power unexplained unsettles it: a quiet room's
echo onset can pass for a fitted path.

The per-sample loop runs in the compiled audio core (``_fir.nlms``) when it is installed; the
numpy loop below is its reference and fallback (about a hundred times slower: it runs only
while the judge has not learned the line).

Knows nothing of Twilio or OpenAI. Formats: pcm16 sample values as float64, 8 kHz.
"""

from __future__ import annotations

import numpy as np

try:  # the optional compiled loop (see telephony/audio/_fir.c)
    from . import _fir
except ImportError:  # pragma: no cover - depends on the install
    _fir = None
_NLMS = getattr(_fir, "nlms", None)

__all__ = ["EchoFit"]

FRAME = 160  # samples in 20 ms
TAPS = 192  # 24 ms of path: the longest G.168 hybrid (D5, 128 taps) with room around it
BEFORE = 48  # taps before the presence test's lag (its peak may sit inside the path)
STEP = 0.5  # NLMS step size
EPOCHS = 3  # passes over the echo heard so far while the fit has not yet explained it
RETRAIN_FRAMES = 10  # the last frames those passes cover (200 ms)
RETRAIN_LIMIT = 20  # frames with such passes in a call at most (their CPU: about 2 ms each)
CONVERGED = 0.12  # the fit explains the echo: the median residual share of the last
CONVERGED_FRAMES = 5  # heard frames of it (measured on echo alone: hybrids and flat paths
# 0.01-0.08, rooms 0.85-3.4; over 3 frames a T60 0.2 s room passed, then paused the agent)
DOUBLE_TALK = 0.3  # a loud frame with this share of its power unexplained holds the caller
LEVEL_DB = 10.0  # and its unexplained power within this of the loudest echo the fit explained
WRONG = 0.5  # a fit that explained the echo learns nothing from a frame it explains this badly
LAPSE_FRAMES = 10  # a converged fit that explains none of this many loud frames in a row is
# not the line's path (a T60 0.2 s room passed for one on 3 frames, then left 0.3-1.2 of each
# frame; a caller is paused well within 200 ms, and the agent's echo then stops)
OVERSHOOT = 8.0  # a loud frame whose residual is this many times its power: the fit says echo
# where the line holds little (a T60 0.2 s room on a quiet line passed for a fitted path, then
# left 7-42 times its next loud frame's power; double talk on a fitted hybrid: at most 2.5,
# on flat 6 dB echo 4.2)
HOLD_FRAMES = 5  # nor for 100 ms after a frame that held the caller
SPAN = (24, 96)  # a fit not yet converged starts again when the presence test's lag leaves
# this span of its taps (its strongest peak may move between a hybrid's peaks, 1-5 ms apart)


class EchoFit:
    """One call's early echo fit. Feed each frame (:meth:`frame`) with the presence test's
    buffers once it has found the echo's delay.

    Args:
        backend: ``"auto"`` (the compiled loop when installed), ``"c"`` (raises RuntimeError
            when it is not) or ``"numpy"``.
    """

    def __init__(self, backend: str = "auto") -> None:
        if backend == "c" and _NLMS is None:
            raise RuntimeError("the compiled audio loop (telephony.audio._fir) is not installed")
        self._c = backend != "numpy" and _NLMS is not None
        self._w = np.zeros(TAPS)
        self._offset: int | None = None  # the delay of tap 0, samples
        self._ratios: list[float] = []  # residual shares of the loud frames of echo alone
        self._hold = 0
        self._retrains = 0
        self._unexplained = 0  # loud frames in a row the converged fit did not explain
        self._heard = 0  # frames of echo heard since the fit began
        self._loudest = 0.0  # the power of the loudest of them, times 10^(-LEVEL_DB/10)
        self.converged = False
        self.share = 0.0  # the last frame's residual share of its power
        self.begun = 0  # times the fit began (a first delay, then a lag outside its span)
        self.heard_caller = 0  # frames it called the caller's

    def frame(
        self, near: np.ndarray, far: np.ndarray, loud: bool, lag: int, heard: bool = False
    ) -> bool:
        """One frame: ``near`` and ``far`` are the presence test's buffers (the caller's audio
        and what played over it, pcm16 values as float64, one length, newest sample last,
        the frame just pushed the last :data:`FRAME`); ``loud``: the frame is loud enough to
        be speech; ``heard``: it holds enough sound above the line's floor for its residual
        to count toward :data:`CONVERGED` (a loud frame always does); ``lag``: the echo's
        bulk delay in samples (the presence test's peak). Returns True when the frame holds
        the caller's voice: loud, a fit that explains the line's echo, and
        :data:`DOUBLE_TALK` of its power beyond the fitted echo (but under
        :data:`OVERSHOOT` times it: beyond that the fit, not the line, is wrong, and it
        unsettles)."""
        n = len(near)
        moved = self._offset is None or not SPAN[0] <= lag - self._offset <= SPAN[1]
        if moved and not self.converged:  # a fit that explains the echo keeps its own lag
            self._begin(near, far, lag)
        assert self._offset is not None
        first = n - FRAME
        if first - self._offset - TAPS + 1 < 0:
            return False
        power = float(near[first:] @ near[first:])
        residual = self._run(near, far, first, FRAME, adapt=False)
        self.share = residual / power if power > 0.0 else 0.0
        if loud and self.converged:
            self._unexplained = self._unexplained + 1 if self.share > CONVERGED else 0
            if self._unexplained >= LAPSE_FRAMES:
                self.unsettle()  # it has explained nothing for a while: not this line's path
            if self.share > OVERSHOOT:
                self.unsettle()  # it says echo where the line holds little: not its path
        caller = loud and self.converged and self.share >= DOUBLE_TALK and residual >= self._loudest
        if not (caller or self._hold > 0 or (self.converged and self.share > WRONG)):
            if not self.converged and self._retrains < RETRAIN_LIMIT:
                self._retrains += 1
                frames = min(RETRAIN_FRAMES, self._heard + 1)
                start = max(n - frames * FRAME, self._offset + TAPS - 1)
                for _ in range(EPOCHS):
                    self._run(near, far, start, n - start, adapt=True)
            else:
                self._run(near, far, first, FRAME, adapt=True)
        if loud and not caller:
            self._heard += 1
            self._loudest = max(self._loudest, power * 10 ** (-LEVEL_DB / 10))
        if (loud or heard) and not caller:  # a quiet line's quieter echo counts (see heard)
            self._ratios = [*self._ratios[1 - CONVERGED_FRAMES :], self.share]
            if len(self._ratios) == CONVERGED_FRAMES and np.median(self._ratios) <= CONVERGED:
                self.converged = True
        self._hold = HOLD_FRAMES if caller else self._hold - 1
        self.heard_caller += caller
        return caller

    def unsettle(self) -> None:
        """What played moved on the caller's clock (a resume after a pause is placed by our
        send time until Twilio's first mark echo of it): the fitted path may now be misaligned
        by milliseconds, and its residual on echo alone would pass for a caller. Its verdicts
        wait until it explains the echo again (it goes on learning from where it was)."""
        self.converged, self._ratios, self._unexplained = False, [], 0
        self._retrains = min(self._retrains, RETRAIN_LIMIT // 2)  # passes to learn it again

    def _begin(self, near: np.ndarray, far: np.ndarray, lag: int) -> None:
        """A new delay: learn the path afresh, :data:`EPOCHS` passes over what is buffered."""
        self._w[:] = 0.0
        self.begun += 1
        self._offset = max(lag - BEFORE, 0)
        self._ratios, self._heard, self.converged, self._loudest = [], 0, False, 0.0
        start = self._offset + TAPS - 1
        if start < len(near):
            for _ in range(EPOCHS):
                self._run(near, far, start, len(near) - start, adapt=True)

    def _run(self, near: np.ndarray, far: np.ndarray, first: int, count: int, adapt: bool) -> float:
        """The residual energy over samples ``first`` .. ``first + count`` (one NLMS step a
        sample when ``adapt``)."""
        assert self._offset is not None
        if self._c:
            assert _NLMS is not None
            return float(_NLMS(self._w, near, far, first, count, self._offset, STEP, adapt))
        w, offset, eps, energy = self._w, self._offset, 1000.0 * TAPS, 0.0
        for j in range(first, first + count):
            x = far[j - offset - TAPS + 1 : j - offset + 1][::-1]  # x[k] = far[j - offset - k]
            e = near[j] - float(w @ x)
            energy += e * e
            if adapt:
                w += (STEP * e / (float(x @ x) + eps)) * x
        return energy
