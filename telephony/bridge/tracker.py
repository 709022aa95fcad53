"""The SDK's playback tracker, fed by Twilio mark echoes, that also counts audio still playing.

Twilio echoes a mark once the audio before it has played, so the marks alone lag the caller's
ear by up to one mark interval (one model audio delta, often 100 ms or more). After an echo,
Twilio keeps playing the audio queued behind it in real time, so between echoes the position is
``now - anchor``, where the anchor is when the item's playback began as the echoes tell it
(echo time minus the audio confirmed by it). An echo we read late (the event loop was busy)
gives a later anchor than one read at once, so the earliest anchor of the item's echoes is
kept; when we send audio after the item's playback should have run dry (Twilio had a gap), the
anchor starts again. The position is capped by the audio of that item sent, and rounded up to
the end of the 20 ms packet being played (that packet is heard whole). The SDK reads
:meth:`get_state` when the caller barges in, to truncate the agent's item where the caller
stopped hearing it.
"""

from __future__ import annotations

import math
import time

from agents.realtime import RealtimePlaybackTracker
from agents.realtime.model import RealtimePlaybackState

__all__ = ["PACKET_MS", "PhonePlaybackTracker"]

PACKET_MS = 20  # Twilio plays 20 ms packets; an item's audio starts on a packet boundary


class PhonePlaybackTracker(RealtimePlaybackTracker):
    def __init__(self) -> None:
        super().__init__()
        self._queued_ms: dict[tuple[str, int], float] = {}  # sent, not yet confirmed, per item
        self._anchor: float | None = None  # when the current item began playing (monotonic)

    def on_sent_ms(self, item_id: str, item_content_index: int, ms: float) -> None:
        """Audio of an item went to Twilio (queued for playback)."""
        key = (item_id, item_content_index)
        queued = self._queued_ms.get(key, 0.0)
        confirmed = self._confirmed_ms(key)
        if self._anchor is not None and confirmed is not None:
            runs_dry_at = self._anchor + (confirmed + queued) / 1000
            if time.monotonic() > runs_dry_at:  # Twilio had nothing to play meanwhile
                self._anchor = None
        self._queued_ms[key] = queued + ms

    def on_play_ms(self, item_id: str, item_content_index: int, ms: float) -> None:
        key = (item_id, item_content_index)
        new_item = self._confirmed_ms(key) is None
        super().on_play_ms(item_id, item_content_index, ms)
        self._queued_ms[key] = max(0.0, self._queued_ms.get(key, 0.0) - ms)
        anchor = time.monotonic() - (self._confirmed_ms(key) or 0.0) / 1000
        if new_item or self._anchor is None:
            self._anchor = anchor
        else:
            self._anchor = min(self._anchor, anchor)

    def freeze(self, heard_ms: float) -> None:
        """Playback of the current item stopped at ``heard_ms`` (a pause: a ``clear`` that
        keeps the rest to play later); audio sent again from there counts on from it once
        its first echo says it began playing: until then the position holds (when Twilio
        starts it is not known here, and a guess from when we sent it runs ahead by the trip
        to Twilio: a count run caught a truncation two packets past what the caller heard)."""
        state = super().get_state()
        item, elapsed = state["current_item_id"], state["elapsed_ms"]
        if item is None or elapsed is None:
            return
        content_index = state["current_item_content_index"] or 0
        if heard_ms > elapsed:
            super().on_play_ms(item, content_index, heard_ms - elapsed)
        self._queued_ms[(item, content_index)] = 0.0
        self._anchor = None

    def on_interrupted(self) -> None:
        super().on_interrupted()
        self._queued_ms.clear()
        self._anchor = None

    def _confirmed_ms(self, key: tuple[str, int]) -> float | None:
        """Audio of item ``key`` its echoes confirmed played; None unless it is the current one."""
        state = super().get_state()
        if (state["current_item_id"], state["current_item_content_index"] or 0) != key:
            return None
        return state["elapsed_ms"]

    def get_state(self) -> RealtimePlaybackState:
        state = super().get_state()
        item = state["current_item_id"]
        elapsed = state["elapsed_ms"]
        if item is None or elapsed is None or self._anchor is None:
            return state
        sent = elapsed + self._queued_ms.get((item, state["current_item_content_index"] or 0), 0.0)
        heard = max(elapsed, (time.monotonic() - self._anchor) * 1000)
        state["elapsed_ms"] = min(math.ceil(heard / PACKET_MS) * PACKET_MS, sent)
        return state
