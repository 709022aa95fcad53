"""Playback bookkeeping for one call: which audio Twilio has played, known from echoed marks.

The bridge sends a ``mark`` after each batch of outbound frames. Twilio echoes a mark once the
audio queued before it has played, or at once when a ``clear`` dropped it. Echoes arrive in the
order the marks were sent. Knows nothing of Twilio's JSON or of OpenAI.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["PendingMark", "Playback"]


@dataclass(frozen=True, slots=True)
class PendingMark:
    """A mark sent after ``ms`` milliseconds of audio of one model item."""

    name: str
    item_id: str
    content_index: int
    ms: float
    generation: int = 0  # which model session the audio came from


class Playback:
    """Marks in flight, and totals of audio sent, played and dropped (milliseconds)."""

    def __init__(self) -> None:
        self._pending: deque[PendingMark] = deque()
        self._cleared: set[str] = set()
        self._seq = 0
        self.sent_ms = 0.0
        self._unplayed_ms = 0.0  # the sum of the pending marks' ms (asked of every caller frame)
        self.played_ms = 0.0
        self.dropped_ms = 0.0
        self.marks_sent = 0
        self.marks_played = 0
        self.marks_cleared = 0

    @property
    def unplayed_ms(self) -> float:
        """Audio sent to Twilio whose mark has not come back yet."""
        return self._unplayed_ms

    def sent(self, item_id: str, content_index: int, ms: float, generation: int = 0) -> PendingMark:
        """Record ``ms`` of audio just sent for an item; returns the mark to send after it."""
        self._seq += 1
        mark = PendingMark(f"m{self._seq}", item_id, content_index, ms, generation)
        self._pending.append(mark)
        self._unplayed_ms += ms
        self.sent_ms += ms
        self.marks_sent += 1
        return mark

    def echoed(self, name: str) -> tuple[list[PendingMark], bool]:
        """Twilio echoed mark ``name``.

        Returns ``(played, known)``: the marks now known played, oldest first (the named one
        and, should Twilio have skipped any, those before it); ``known`` is False for a name we
        never sent. An echo of a mark dropped by ``clear`` returns ``([], True)``.
        """
        if name in self._cleared:
            self._cleared.discard(name)
            return [], True
        if not any(m.name == name for m in self._pending):
            return [], False
        played = []
        while self._pending:
            mark = self._pending.popleft()
            played.append(mark)
            if mark.name == name:
                break
        played_ms = sum(m.ms for m in played)
        self.played_ms += played_ms
        # none pending: exactly nothing unplayed (no rounding left over from the sums)
        self._unplayed_ms = self._unplayed_ms - played_ms if self._pending else 0.0
        self.marks_played += len(played)
        return played, True

    def cleared(self) -> float:
        """A ``clear`` was sent: every pending mark's audio is dropped. Returns the ms dropped."""
        dropped = self.unplayed_ms
        self._cleared.update(m.name for m in self._pending)
        self.marks_cleared += len(self._pending)
        self._pending.clear()
        self._unplayed_ms = 0.0
        self.dropped_ms += dropped
        return dropped
