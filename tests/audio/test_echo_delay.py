"""The echo presence test (GCC-PHAT) on real speech: the agent's 9.9 s reply echoed back
through flat, G.168 hybrid and speakerphone-room paths (μ-law on both legs), a caller talking
over a line with no echo, and a caller talking over the room's echo. Deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from test_echo_judge import FAR, FRAME, PATHS, line, samples

from telephony.audio import ulaw_decode, ulaw_encode
from telephony.audio.echo_delay import PEAK, SETTLE_FRAMES, SIZE, EchoDelay
from telephony.audio.echo_judge import EchoJudge
from telephony.simulate.echo_paths import room_path

REPLY_AT = 8000  # FAR: 1 s of silence, then the reply
DELAYS = {  # the bulk delay each path of test_echo_judge.PATHS was given, ms
    "flat 6 dB 20 ms": 20,
    "flat 10 dB 450 ms": 450,
    "flat 15 dB 150 ms": 150,
    "room T60 0.6 s 12 dB noise": 60,
}


def pcm(near: np.ndarray) -> bytes:
    """As μ-law carries it: pcm16 8 kHz bytes."""
    return ulaw_decode(ulaw_encode(np.clip(np.rint(near), -32768, 32767).astype("<i2").tobytes()))


def run(near: np.ndarray, frames: int | None = None) -> tuple[EchoDelay, list[bool], list[bool]]:
    """Each frame pushed with what played over it: (the test, per frame loud, not_echo)."""
    near_b, far_b = pcm(near), FAR.astype("<i2").tobytes()
    test, loud, not_echo = EchoDelay(), [], []
    end = len(near_b) if frames is None else frames * 2 * FRAME
    for i in range(0, end - 2 * FRAME + 1, 2 * FRAME):
        test.push(near_b[i : i + 2 * FRAME], far_b[i : i + 2 * FRAME])
        loud.append(test.loud())
        not_echo.append(test.not_echo())
    return test, loud, not_echo


@pytest.mark.parametrize("name", PATHS)
def test_echo_is_found_within_its_first_loud_frames(name: str) -> None:
    """On every path the echo is found by its fifth loud frame (before SETTLE_FRAMES of a
    sound without a peak could count as the caller's, none does), at the path's bulk delay
    where it is a pure one; the frames after are not called the caller's either."""
    test, loud, not_echo = run(PATHS[name], frames=(REPLY_AT + 2 * 8000) // FRAME)
    assert test.seen, test.peak
    first_loud = loud.index(True)
    assert test.found_after is not None and test.found_after <= 5
    assert not any(not_echo), [i - first_loud for i, x in enumerate(not_echo) if x]
    if name in DELAYS:
        assert abs(test.delay_ms - DELAYS[name]) <= 15, test.delay_ms


def test_a_caller_over_a_line_without_echo_is_not_echo() -> None:
    """No echo; "Wait, stop, I have a question." 0.5 s into the reply: no peak in any of its
    loud frames (at most 0.10 on the bench's calls), so every loud frame from its
    SETTLE_FRAMES-th on is not echo, and the quiet ones between its words too."""
    words = samples("wait_stop.ulaw")
    at = REPLY_AT + 4000
    near = np.zeros(len(FAR))
    near[at : at + len(words)] = words
    test, loud, not_echo = run(near)
    assert not test.seen and test.checks > 40
    assert test.peak < PEAK
    first = loud.index(True)
    spoken = range(first + SETTLE_FRAMES - 1, (at + len(words)) // FRAME)
    assert all(not_echo[i] for i in spoken if loud[i])
    assert sum(not_echo[i] for i in spoken) >= 0.9 * len(spoken)
    assert not any(not_echo[: first + SETTLE_FRAMES - 1])


def test_a_caller_over_the_rooms_echo_is_double_talk() -> None:
    """The room's echo is found at once; the same words 0.5 s into the reply over it fill the
    window with sound the agent's audio does not explain: its peak falls under DOUBLE_TALK of
    the echo's own for most of the words (the room's echo alone: none at all)."""
    echo = line(-12, 60, room_path(0.3), -50)
    words = samples("wait_stop.ulaw")
    at = REPLY_AT + 4000
    near = echo.copy()
    near[at : at + len(words)] += words
    test, _, not_echo = run(near)
    assert test.seen
    before, during = not_echo[: at // FRAME], not_echo[at // FRAME : (at + len(words)) // FRAME]
    assert not any(before)
    assert sum(during) >= 0.3 * len(during), (sum(during), len(during))
    _, _, alone = run(echo)
    assert not any(alone)


def test_the_test_lets_its_buffers_go_once_the_judge_trusts_the_path() -> None:
    """Over flat echo (10 dB, 450 ms) the judge learns the line; from then on the presence
    test holds no audio (its two buffers were 130 KiB a call) and ignores what is pushed,
    and what it found stays: the echo, at the path's delay."""
    near, far = pcm(PATHS["flat 10 dB 450 ms"]), FAR.astype("<i2").tobytes()
    judge = EchoJudge()
    for i in range(0, len(near) - 2 * FRAME + 1, 2 * FRAME):
        judge.frame(near[i : i + 2 * FRAME], far[i : i + 2 * FRAME])
        if judge.learned:
            break
    assert judge.learned and judge.echo_found
    presence = judge.presence
    assert presence._rows.nbytes == presence.near.nbytes == presence.far.nbytes == 0
    assert abs(presence.delay_ms - 450) <= 15
    presence.push(near[:320], far[:320])
    presence.idle(3)
    assert presence._rows.nbytes == 0 and presence.seen


@pytest.mark.parametrize("caller", ["tone", "speech"])
def test_no_echo_is_found_while_what_played_is_a_tone(caller: str) -> None:
    """What played is a 600 Hz tone (a test reply, the hold sound), no echo on the line, and
    the caller sends a 500 Hz tone twice (as tests/observability/test_cost.py does) or says
    "Wait, stop…": a tone has no one lag, and without the flatness gate GCC-PHAT peaked at
    0.59 and 0.31 (over :data:`PEAK`) and found "echo" that is not there. The gate does not
    hide real echo: the reply's speech echoed 10 dB down is still found."""
    t = np.arange(2 * 8000) / 8000
    far = np.concatenate([np.zeros(800), 8000 * np.sin(2 * np.pi * 600 * t)])
    if caller == "tone":
        burst = 16000 * np.sin(2 * np.pi * 500 * np.arange(4800) / 8000)
        words = np.concatenate([burst, np.zeros(800), burst])
    else:
        words = samples("wait_stop.ulaw")
    near = np.zeros(len(far))
    near[1600 : 1600 + len(words)] = words[: len(far) - 1600]
    near_b, far_b = pcm(near), far.astype("<i2").tobytes()
    test, checked = EchoDelay(), 0
    for i in range(0, len(near_b) - 2 * FRAME + 1, 2 * FRAME):
        test.push(near_b[i : i + 2 * FRAME], far_b[i : i + 2 * FRAME])
        if test.loud():
            checked += 1
            assert not test.check(), (i // (2 * FRAME), test.peak)
    assert checked >= 10 and not test.seen
    speech_test, _, _ = run(PATHS["flat 10 dB 450 ms"], frames=(REPLY_AT + 2 * 8000) // FRAME)
    assert speech_test.seen


def test_the_window_moves_on_as_a_shift_would() -> None:
    """The buffers are written onwards and copied back only now and then (SLACK_FRAMES): what
    they hold after any mix of frames and idle stretches is exactly the last 1.1 s, as if
    shifted a frame at a time."""
    rng = np.random.default_rng(3)
    presence, near_ref, far_ref = EchoDelay(), np.zeros(SIZE), np.zeros(SIZE)
    for step in range(400):
        if step % 7 == 3:
            frames = int(rng.integers(1, 80))  # up to 1.6 s unjudged, beyond the window too
            presence.idle(frames)
            shift = min(frames * FRAME, SIZE)
            for ref in (near_ref, far_ref):
                ref[:-shift] = ref[shift:]
                ref[-shift:] = 0.0
        else:
            near, far = (rng.integers(-30000, 30000, FRAME).astype("<i2") for _ in range(2))
            presence.push(near.tobytes(), far.tobytes())
            for ref, new in ((near_ref, near), (far_ref, far)):
                ref[:-FRAME] = ref[FRAME:]
                ref[-FRAME:] = new
        assert np.array_equal(presence.near, near_ref) and np.array_equal(presence.far, far_ref)
