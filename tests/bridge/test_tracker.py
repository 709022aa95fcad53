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


def test_an_echo_read_late_does_not_pull_the_position_back(monkeypatch) -> None:
    """Under load the event loop may read an echo tens of ms after it arrived; the earliest
    anchor of the item's echoes holds, so the barge-in position is not short by that lag."""
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    tracker = PhonePlaybackTracker()
    tracker.on_sent_ms("item_a", 0, 1000.0)
    tracker.on_play_ms("item_a", 0, 100.0)  # read at once: playback began at 99.9
    now[0] = 100.135  # the 200 ms echo, due at 100.1, read 35 ms late
    tracker.on_play_ms("item_a", 0, 100.0)
    assert tracker.get_state()["elapsed_ms"] == 240.0  # 235 ms heard, in its 20 ms packet


def test_the_packet_being_played_counts_as_heard(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    tracker = PhonePlaybackTracker()
    tracker.on_sent_ms("item_a", 0, 500.0)
    tracker.on_play_ms("item_a", 0, 100.0)
    now[0] += 0.041  # 141 ms into the item: the packet 140-160 ms is on its way to the ear
    assert tracker.get_state()["elapsed_ms"] == 160.0


def test_after_twilio_ran_dry_the_position_waits_for_the_next_echo(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    tracker = PhonePlaybackTracker()
    tracker.on_sent_ms("item_a", 0, 100.0)
    tracker.on_play_ms("item_a", 0, 100.0)  # all of it played by 100.0
    now[0] += 0.5  # the model was slow: half a second of nothing to play
    tracker.on_sent_ms("item_a", 0, 100.0)  # playback resumes now, not at 100.0
    now[0] += 0.03
    assert tracker.get_state()["elapsed_ms"] == 100.0  # not 200 (the old anchor would say 530)
    tracker.on_play_ms("item_a", 0, 100.0)  # the echo re-anchors
    assert tracker.get_state()["elapsed_ms"] == 200.0
