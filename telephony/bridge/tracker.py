"""The SDK's playback tracker, fed by Twilio mark echoes, that also counts audio still playing.

Twilio echoes a mark once the audio before it has played, so the marks alone lag the caller's
ear by up to one mark interval (one model audio delta, often 100 ms or more). After an echo,
Twilio keeps playing the audio queued behind it in real time, so between echoes the position is
``confirmed + time since the echo``, capped by the audio of that item sent but not yet
confirmed. The SDK reads :meth:`get_state` when the caller barges in, to truncate the agent's
item where the caller stopped hearing it.
"""

from __future__ import annotations

import time

from agents.realtime import RealtimePlaybackTracker
from agents.realtime.model import RealtimePlaybackState

__all__ = ["PhonePlaybackTracker"]


class PhonePlaybackTracker(RealtimePlaybackTracker):
    def __init__(self) -> None:
        super().__init__()
        self._queued_ms: dict[tuple[str, int], float] = {}  # sent, not yet confirmed, per item
        self._confirmed_at: float | None = None

    def on_sent_ms(self, item_id: str, item_content_index: int, ms: float) -> None:
        """Audio of an item went to Twilio (queued for playback)."""
        key = (item_id, item_content_index)
        self._queued_ms[key] = self._queued_ms.get(key, 0.0) + ms

    def on_play_ms(self, item_id: str, item_content_index: int, ms: float) -> None:
        super().on_play_ms(item_id, item_content_index, ms)
        key = (item_id, item_content_index)
        self._queued_ms[key] = max(0.0, self._queued_ms.get(key, 0.0) - ms)
        self._confirmed_at = time.monotonic()

    def on_interrupted(self) -> None:
        super().on_interrupted()
        self._queued_ms.clear()
        self._confirmed_at = None

    def get_state(self) -> RealtimePlaybackState:
        state = super().get_state()
        item = state["current_item_id"]
        elapsed = state["elapsed_ms"]
        if item is None or elapsed is None or self._confirmed_at is None:
            return state
        queued = self._queued_ms.get((item, state["current_item_content_index"] or 0), 0.0)
        since_echo_ms = (time.monotonic() - self._confirmed_at) * 1000
        state["elapsed_ms"] = elapsed + min(since_echo_ms, queued)
        return state
