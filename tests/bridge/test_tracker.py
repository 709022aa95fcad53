"""PhonePlaybackTracker: mark echoes plus the audio heard since, never beyond what was sent."""

from __future__ import annotations

import time

import pytest

from telephony.bridge.tracker import PhonePlaybackTracker


def test_position_runs_on_between_echoes_but_not_past_the_audio_sent(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    tracker = PhonePlaybackTracker()
    assert tracker.get_state()["elapsed_ms"] is None  # nothing heard yet: the SDK skips truncation
    tracker.on_sent_ms("item_a", 0, 300.0)
    tracker.on_play_ms("item_a", 0, 100.0)  # the first mark came back
    assert tracker.get_state()["elapsed_ms"] == 100.0
    now[0] += 0.06  # 60 ms later the caller has heard 60 ms more
    assert tracker.get_state()["elapsed_ms"] == pytest.approx(160.0)
    now[0] += 1.0  # but never more than was sent (300 ms)
    assert tracker.get_state()["elapsed_ms"] == 300.0
    tracker.on_interrupted()
    assert tracker.get_state()["current_item_id"] is None
