"""The far end's playout on our clock (:class:`telephony.audio.echo.PlayoutReference`), which
pairs each caller frame with what played over it for the echo judge and the recorder: which
samples :meth:`take` returns as audio is queued, placed by mark echoes, and cleared."""

from __future__ import annotations

import numpy as np

from telephony.audio.echo import PlayoutReference


def ramp(start: int, n: int) -> bytes:
    """pcm16 samples numbered ``start``, ``start + 1``, … (so a sample says where it came from)."""
    return np.arange(start, start + n, dtype="<i2").tobytes()


def taken(ref: PlayoutReference, end: float, n: int = 160) -> np.ndarray:
    return np.frombuffer(ref.take(end, n), dtype="<i2")


def test_queued_audio_plays_back_to_back_and_silence_elsewhere() -> None:
    ref = PlayoutReference()
    first = ref.play(ramp(1, 800), now=1.0)  # 100 ms from 1.0 s
    assert first == 800 and ref.play(ramp(801, 800), now=1.01) == 1600  # queued behind
    assert not taken(ref, 1.0).any()  # before it
    assert (taken(ref, 1.02) == np.arange(1, 161)).all()
    assert (taken(ref, 1.12) == np.arange(801, 961)).all()  # the second chunk, on time
    assert (taken(ref, 1.11) == np.arange(721, 881)).all()  # across the two
    tail = taken(ref, 1.21)
    assert (tail[:80] == np.arange(1521, 1601)).all() and not tail[80:].any()  # then silence


def test_the_first_echo_of_a_run_places_it_later_echoes_do_not() -> None:
    ref = PlayoutReference()
    ref.play(ramp(1, 800), now=0.0)
    index = ref.play(ramp(801, 800), now=0.0)
    ref.played_until(800, at=0.15)  # the first chunk ended at 0.15, not 0.10: run moves 50 ms
    assert (taken(ref, 0.17) == np.arange(801, 961)).all()
    ref.played_until(index, at=0.30)  # read 50 ms late: moves nothing
    assert (taken(ref, 0.17) == np.arange(801, 961)).all()


def test_placements_count_each_run_begun_or_moved() -> None:
    """What the early echo fit is told of (it is aligned to the sample): a new run, and a run
    an echo moved; not audio queued behind a run, an echo on time, or a later echo."""
    ref = PlayoutReference()
    ref.play(ramp(1, 800), now=1.0)
    assert ref.placements == 1
    ref.play(ramp(801, 800), now=1.05)  # queued behind: the same run
    ref.played_until(800, at=1.10)  # on time
    assert ref.placements == 1
    index = ref.play(ramp(1, 800), now=1.5)  # after it ended: a new run
    ref.played_until(index, at=1.62)  # its first echo moves it 20 ms
    assert ref.placements == 3
    ref.played_until(index, at=1.70)  # a later echo of that run moves nothing
    assert ref.placements == 3


def test_a_run_is_never_placed_over_the_one_before() -> None:
    """Two runs 40 ms apart; an echo of the second read as if it had played 100 ms early (a
    jittery clock) starts it where the first ended, not over it."""
    ref = PlayoutReference()
    ref.play(ramp(1, 800), now=0.0)  # run 1: 0.00-0.10
    ref.play(ramp(1001, 800), now=0.14)  # run 2: 0.14-0.24
    ref.played_until(1600, at=0.14)  # says run 2 ended at 0.14: it would start at 0.04
    assert (taken(ref, 0.10) == np.arange(641, 801)).all()  # run 1 still whole
    assert (taken(ref, 0.12) == np.arange(1001, 1161)).all()  # run 2 from run 1's end


def test_a_clear_keeps_the_packet_playing_and_drops_the_rest() -> None:
    ref = PlayoutReference()
    ref.play(ramp(1, 800), now=0.0)
    ref.play(ramp(801, 800), now=0.0)
    ref.stop(0.05)  # in the third packet (0.04-0.06): it plays whole
    assert (taken(ref, 0.06) == np.arange(321, 481)).all()
    assert not taken(ref, 0.08).any()
    assert not ref.audible(0.2, tail_s=0.1)


def test_a_long_reply_queued_ahead_is_read_where_the_ear_is() -> None:
    """Ten seconds queued in 20 ms packets (the model sends faster than real time): each
    frame taken is the one playing, whatever is queued behind it."""
    ref = PlayoutReference()
    for k in range(500):
        ref.play(ramp(k * 160 % 30000, 160), now=0.001 * k)
    for k in (0, 1, 250, 499):
        expected = np.arange(k * 160 % 30000, k * 160 % 30000 + 160)
        assert (taken(ref, 0.02 * (k + 1)) == expected).all(), k


def test_take_reads_every_span_as_a_scan_of_all_segments_would() -> None:
    """:meth:`take` searches the segments (their starts rise); over a call of queued runs,
    echo placements that move runs, clears and gaps, each 20 ms span (and a recorder's
    longer one) equals what a scan of every kept segment gives."""
    rng = np.random.default_rng(7)
    ref = PlayoutReference(keep_s=2.0)
    now, sample, marks = 0.0, 0, []
    for step in range(600):
        now += 0.02
        kind = rng.random()
        if kind < 0.35:  # a delta of 20-100 ms, as the model sends them
            n = 160 * int(rng.integers(1, 6))
            marks.append(ref.play(ramp(sample % 30000, n), now))
            sample += n
        elif kind < 0.45 and marks:  # a mark echo, late or early by up to 40 ms
            ref.played_until(marks.pop(0), now + float(rng.uniform(-0.04, 0.04)))
        elif kind < 0.48:  # a clear
            ref.stop(now)
            marks.clear()
        elif kind < 0.55:  # a pause between replies: the next delta starts a new run
            now += float(rng.uniform(0.1, 1.0))
        for end, n in ((now - float(rng.uniform(0.0, 0.5)), 160), (now, 480)):
            expected = np.zeros(n, dtype="<i2")
            t0 = end - n / 8000
            for seg in ref._segments:  # every segment: the reading take() must equal
                offset = round((t0 - seg.start) * 8000)
                lo, hi = max(0, -offset), min(n, len(seg.samples) - offset)
                if seg.start < end and seg.end > t0 and hi > lo:
                    expected[lo:hi] = seg.samples[offset + lo : offset + hi]
            assert (taken(ref, end, n) == expected).all(), (step, end, n)
