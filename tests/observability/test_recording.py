"""Call recordings: a stereo WAV whose left channel is what the caller sent and whose right
channel is the agent as the caller heard it, cut where a ``clear`` stopped it."""

from __future__ import annotations

import stat
import wave

import numpy as np
from helpers import SILENCE, events, final_log, fixture_audio

from telephony.audio import ulaw_decode
from telephony.testing import tone

PACKET = 160  # samples in one 20 ms packet


def pcm(ulaw: bytes) -> np.ndarray:
    return np.frombuffer(ulaw_decode(ulaw), dtype="<i2").astype(np.int32)


async def test_the_recording_holds_both_sides_aligned_and_cut_at_the_clear(live_server) -> None:
    # the caller talks over the first (3 s) reply: a barge-in, the model decides it
    caller = fixture_audio("goforward.ulaw") + SILENCE * 9600 + fixture_audio("numbers.ulaw")
    overrides = {"record_calls": True, "barge_in_guard": False, "greeting": ""}
    async with live_server(
        overrides=overrides, reply=lambda turn: tone(600, 3000 if turn == 0 else 400)
    ) as srv:
        result = await srv.call(caller, speed=1, tail_s=0.5, min_turns=2)
        log = await final_log(srv, result.call_sid)
        path = srv.settings.call_log_dir / f"{result.call_sid}.wav"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int32)
    left, right = samples[0::2], samples[1::2]
    # left: every frame the caller sent, sample for sample
    sent = caller + SILENCE * (result.frames_sent * 160 - len(caller))
    assert len(left) == result.frames_sent * 160
    assert np.array_equal(left, pcm(sent[: len(left)]))
    assert log[-1]["recording"]["seconds"] == round(result.frames_sent * 0.02, 2)
    # right: each reply as the simulator played it, sample for sample after alignment
    clear = result.clears[0]
    # the server cuts the recording where the clear left, on the caller's audio clock; the
    # simulator stops playing when its loop reads the clear, which a busy loop reads late
    # (once in a busy run the reply came out 2 packets short): those packets, counted on
    # the simulator's own clock (``clear_lag_s``), may be played and not recorded
    late = int(result.clear_lag_s[0] / 0.02)
    found = []
    for turn in result.turns[:2]:
        played = b"".join(
            frame
            for at, frame in result.played
            if turn.first_frame_at <= at and (turn.index > 0 or at < clear)
        )[: turn.frames * 160]
        heard = pcm(played)
        if turn.index == 0:  # the cut: where the clear took effect is known to a packet
            heard = heard[: -PACKET * (1 + late)]
        start = int(turn.first_frame_at * 8000)
        lo = max(0, start - 800)
        window = right[lo : start + len(heard) + 800]
        offsets = [
            k
            for k in range(len(window) - len(heard) + 1)
            if window[k] == heard[0] and np.array_equal(window[k : k + len(heard)], heard)
        ]
        assert offsets, f"reply {turn.index} is not in the right channel whole ({late=})"
        found.append((lo + offsets[0], len(heard)))
    # the cut: from the end of what the caller heard of the first reply to the start of the
    # next, the right channel is silent (the cleared audio is not in the recording), but for
    # the 20 ms packet at the clear: the server places the clear on the caller's audio clock,
    # whose frames come every 20 ms, so its packet may be in or out, as the caller's may
    (first_at, first_len), (second_at, _) = found
    assert first_len < 3000 * 8  # the first reply was cut short
    assert not np.any(right[first_at + first_len + (2 + late) * PACKET : second_at])
    assert events(log, "clear.sent")
