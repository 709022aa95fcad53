"""GPT-Live's echo gate: caller frames that hold only the agent's own voice coming back on the
line reach the model as silence.

On GPT-Live the bridge cannot veto an interruption (the model decides itself when to stop), so
the echo path works on the caller's audio before ``session.input_audio.append``: the echo
judge of the barge-in guard (:class:`~.echo_path.GuardEcho`, learning each call's echo path
from what we played and when the caller's phone played it, the mark echoes) says for each
caller frame while the agent is audible whether it holds sound beyond the echo. A frame that
does not, on a line where the echo was found (or whose path the judge has learned), becomes
20 ms of μ-law silence, except within :data:`GATE_HOLD_MS` of the caller's last sound (the
tail of their word, and echo under it, reaches the model). While the agent's first 3 s play
and the judge has not learned the line (a dispersive line hybrid takes it longer to find), a
level test stands in: a frame peaking under half the loudest the agent played in the last
600 ms is echo (Geigel's double-talk test); one that loud is the caller's. Otherwise what
the judge calls the caller's, and every frame while nothing of the agent's can be echoing,
passes untouched. If the judge fails, frames pass untouched from then on (``barge_in.echo_failed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..audio import ulaw_decode
from ..audio.echo import PlayoutReference
from ..audio.speech import SpeechDetector
from .barge_in import ECHO_TAIL_S, GATE_HOLD_MS, SILENT_FRAME
from .echo_path import GuardEcho

__all__ = ["LiveEchoGate"]

EARLY_FRAMES = 150  # the first 3 s of the agent's audio the judge has heard the line under
GEIGEL = 0.5  # echo peaks stay under half the far end's (6 dB, G.168's worst return loss)
WINDOW_SAMPLES = 4800  # the far end's last 600 ms: the echo delays to cover (450 ms + a room)


class LiveEchoGate:
    """One call's echo gate on GPT-Live.

    Args:
        record: the call log's ``record(event, **fields)``.
    """

    def __init__(self, record: Callable[..., Any]) -> None:
        self.reference = PlayoutReference()  # what played, on the caller's audio clock
        self._echo = GuardEcho(record, early_fit=False)  # not measured on GPT-Live's pacing
        self._detect = SpeechDetector()
        self._sound_at_ms = -(10**9)
        self.frames_judged = 0
        self.frames_gated = 0
        self.cpu_s = 0.0

    def frame(self, ulaw: bytes, at: float) -> bytes:
        """One caller frame (μ-law 8 kHz, 20 ms) ending at ``at`` on the caller's audio clock
        (seconds); returns what the model should hear: the same bytes, or 20 ms of μ-law
        silence for a frame of the agent's echo alone."""
        if not self.reference.audible(at, ECHO_TAIL_S) or len(ulaw) != 160:
            return ulaw
        t0 = time.perf_counter()
        caller_ms = round(at * 1000)
        raw = ulaw_decode(ulaw)
        far = self.reference.take(at, 160)
        loud = self._detect.loud(raw)
        beyond, _ = self._echo.frame(raw, far, at, caller_ms, loud and not self._echo.learned)
        self.frames_judged += 1
        out = ulaw
        if beyond and loud and self._early_echo(raw, at):
            beyond = False  # louder than echo can be only in double talk: not here
        if self._echo.failed or (beyond and loud):
            self._sound_at_ms = caller_ms
        elif (
            not beyond
            and (self._echo.learned or self._echo.echo_found or self._early)
            and caller_ms - self._sound_at_ms > GATE_HOLD_MS
        ):
            out = SILENT_FRAME
            self.frames_gated += 1
        self.cpu_s += time.perf_counter() - t0
        return out

    @property
    def _early(self) -> bool:
        """The judge has not learned the line and the agent's first words are still playing
        (:data:`EARLY_FRAMES` judged), where the level test stands in for it."""
        return not (self._echo.learned or self._echo.failed) and (
            self.frames_judged <= EARLY_FRAMES
        )

    def _early_echo(self, raw: bytes, at: float) -> bool:
        """Early (:attr:`_early`), whether the caller's frame is under :data:`GEIGEL` of the
        loudest the agent played within the echo window before it: no echo path (a G.168
        hybrid returns at least 6 dB less) makes echo that loud, a caller talking over the
        agent usually is (the Geigel double-talk test, ITU-T G.168's classic detector)."""
        if not self._early:
            return False
        near = np.abs(np.frombuffer(raw, "<i2").astype(np.int32)).max()
        far = np.frombuffer(self.reference.take(at, WINDOW_SAMPLES), "<i2")
        return bool(near < GEIGEL * np.abs(far.astype(np.int32)).max())

    def totals(self) -> dict[str, Any]:
        """For ``call.end``: frames judged, frames that reached the model as silence, the
        judge's CPU per judged frame (µs), and the echo judge's own figures."""
        per_frame = 1e6 * self.cpu_s / self.frames_judged if self.frames_judged else 0.0
        return {
            "echo_gate": {
                "frames_judged": self.frames_judged,
                "frames_gated": self.frames_gated,
                "us_per_frame": round(per_frame, 1),
                **self._echo.totals(),
            }
        }
