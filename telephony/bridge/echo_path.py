"""The echo judge as the barge-in guard uses it on one call, with its failure contained.

:class:`GuardEcho` feeds :class:`~telephony.audio.echo_judge.EchoJudge` the caller's frames
on the caller's audio clock (frames that went unjudged are told as idle), keeps the frames it
judged before it learned the line and hands them back judged again once it has, and contains
a failure: an exception in the judge (a bug, a frame it cannot take) is logged once with the
call's ID (``barge_in.echo_failed``) and from then on every frame counts as sound beyond the
echo, the guard as it was before the echo work: the caller is always heard, the agent may
pause for its own echo, and the call goes on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ..audio.echo_judge import EARLY_FRAMES, EchoJudge
from ..observability.call_log import describe_error

__all__ = ["GuardEcho", "Reviewed"]

FRAME_S = 0.02

# (first caller_ms, last caller_ms, the caller_ms of the loud frames in that stretch now judged
# beyond the echo): the frames judged before the judge learned, judged again with its path
Reviewed = tuple[int, int, set[int]]


class GuardEcho:
    """One call's echo judge for :class:`~telephony.bridge.barge_in.BargeInGuard`.

    Args:
        record: the call log's ``record(event, **fields)``; gets ``barge_in.echo_failed``
            (``error``: the exception's type and message, ``caller_ms``) once, if the judge
            fails.
        early_fit: the judge runs its early echo fit (GPT-Live's echo gate does not: its
            output audio is placed differently, and the fit called echo the caller's there).
    """

    def __init__(self, record: Callable[..., None], early_fit: bool = True) -> None:
        self.judge = EchoJudge(early_fit=early_fit)
        self.failed = False
        self._record = record
        self._judged_at = 0.0  # the caller-clock end of the last frame judged
        self._placements = 0  # the playout reference's placements when last judged
        # (caller_ms, loud) of the frames judged before the judge learned, for its review
        self._early: deque[tuple[int, bool]] = deque(maxlen=EARLY_FRAMES)
        self.learned_ms: int | None = None  # the caller_ms of the frame the judge learned on

    @property
    def learned(self) -> bool:
        """The judge has learned (and trusts) the line's echo path; False once it failed."""
        return not self.failed and self.judge.learned

    def edge(self) -> bool:
        """The last frame judged, on a learned line, held some sound beyond the echo (in a
        band, over the judge's margin; its ``share`` over 0, under ``SHARE`` unless it was
        speech): next to the caller's speech, a word's onset or fading tail under loud echo
        (on echo alone the share is 0 in most frames)."""
        return not self.failed and self.judge.learned and self.judge.share > 0.0

    @property
    def echo_found(self) -> bool:
        """The presence test found the agent's echo on the line (False once the judge failed)."""
        return not self.failed and self.judge.echo_found

    @property
    def delay_ms(self) -> float | None:
        """The line's bulk echo delay the presence test found, ms (None: no echo found yet,
        or the judge failed)."""
        return self.judge.presence.delay_ms if self.echo_found else None

    @property
    def onset_frames(self) -> int:
        """On the first frame of a caller talking over found echo, the frames just before it
        that already held their voice (:attr:`~telephony.audio.echo_delay.EchoDelay.
        onset_frames`; 0 on any other frame, or once the judge failed or trusts its path)."""
        if self.failed or self.judge.learned:
            return 0
        return self.judge.presence.onset_frames

    def frame(
        self, near: bytes, far: bytes, at: float, caller_ms: int, loud: bool, placements: int = 0
    ) -> tuple[bool, Reviewed | None]:
        """One caller frame ``near`` and what played over it, ``far`` (pcm16 8 kHz, 320 bytes
        each), ending at ``at`` (seconds on the caller's audio clock, ``caller_ms`` in ms);
        ``loud``: our detector found sound in it; ``placements``: the playout reference's
        (:attr:`~telephony.audio.echo.PlayoutReference.placements`: when it changes, what
        played moved on the clock). Returns whether the frame holds sound beyond the agent's
        echo (always True once the judge failed) and, on the frame the judge learns the line,
        the earlier frames judged again (:data:`Reviewed`; else None)."""
        if self.failed:
            return True, None
        try:
            if placements != self._placements:  # a new run, or one a mark echo moved
                self._placements = placements
                self.judge.moved()
            gap = round((at - self._judged_at) / FRAME_S) - 1
            if gap > 0:
                self.judge.idle(gap)
            self._judged_at = at
            early = not self.judge.learned
            beyond = self.judge.frame(near, far)
            if not early:
                return beyond, None
            self._early.append((caller_ms, loud))
            if not self.judge.learned:
                return beyond, None
            self.learned_ms = caller_ms
            return beyond, self._review()
        except Exception as exc:  # contained: the call goes on without the echo judge
            self.failed = True
            self._early.clear()
            self._record("barge_in.echo_failed", error=describe_error(exc), caller_ms=caller_ms)
            return True, None

    def _review(self) -> Reviewed | None:
        verdicts = self.judge.review()
        early, self._early = list(self._early), deque(maxlen=0)
        if not verdicts:
            return None
        again = {ms for (ms, loud), beyond in zip(early, verdicts, strict=True) if beyond and loud}
        return early[0][0], early[-1][0], again

    def totals(self) -> dict[str, Any]:
        """For ``call.end``: frames judged echo, where the presence test found it (ms; None:
        not found), when the judge learned the line (``echo_learned_ms``, caller ms; None: it
        did not), the learned paths that failed their check (``echo_restarts``), and the early
        echo fit's work (``echo_fit``: the times it began, the frames it called the caller's;
        None without it)."""
        fit = self.judge.fit
        return {
            "echo_frames": self.judge.echo_frames,
            "echo_delay_ms": self.judge.presence.delay_ms,
            "echo_learned_ms": self.learned_ms,
            "echo_restarts": self.judge.restarts,
            "echo_fit": fit and {"begun": fit.begun, "caller_frames": fit.heard_caller},
        }
