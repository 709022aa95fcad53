"""Echo cancelling for the caller's audio: the far end's playout on our clock, and WebRTC AEC3.

A caller on a speakerphone, a car kit or a line with hybrid echo sends back a copy of what
they hear, 50-300 ms late and 10-30 dB down. :class:`PlayoutReference` keeps what the far end
is playing (pcm16 8 kHz) on our own clock, so each caller frame can be paired with the audio
that was playing when it was captured; :class:`EchoCanceller` takes the pair and removes the
echo with WebRTC's AEC3 (LiveKit's binding of the WebRTC audio processing module), which
also finds the remaining echo delay itself.

Knows nothing of Twilio or OpenAI. Formats: pcm16 little-endian mono, 8 kHz, bytes.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["RATE", "EchoCanceller", "PlayoutReference"]

RATE = 8000
APM_FRAME = 80  # WebRTC's audio processing takes 10 ms frames
PACKET = 160  # samples in a 20 ms packet


@dataclass(slots=True)
class _Segment:
    start: float  # when its first sample plays (seconds, our clock)
    samples: np.ndarray  # int16
    first: int  # index of its first sample among all samples ever scheduled
    run: int  # segments of one run play back to back, with nothing between them

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / RATE


class PlayoutReference:
    """What the far end plays, and when, on the caller of these methods' clock (seconds).

    Audio handed to :meth:`play` plays after whatever is still playing (as a media server plays
    queued audio); audio arriving when nothing is queued starts a new *run*. The first
    :meth:`played_until` of a run (a Twilio mark echo) moves the whole run to when the far end
    said it finished that point: a media server plays a run back to back, so one offset (our
    send time to its playout) holds for all of it, and later echoes, late by however long our
    event loop took to read them, move nothing. :meth:`stop` drops what had not played (a
    ``clear``). :meth:`take` returns what was playing during a span, silence where nothing was.

    Args:
        keep_s: how long played audio is kept for :meth:`take` (the echo delays to cover).
    """

    def __init__(self, keep_s: float = 2.0) -> None:
        self._segments: deque[_Segment] = deque()
        self._keep_s = keep_s
        self._end = 0.0  # when the last scheduled sample finishes
        self.scheduled = 0  # samples scheduled so far
        self._run = 0
        self._corrected_run = -1  # the newest run an echo has placed
        self.placements = 0  # runs begun or moved so far: what played moved on the clock

    def play(self, pcm: bytes, now: float) -> int:
        """Schedule ``pcm`` (pcm16 8 kHz bytes) after what is queued, starting no earlier than
        ``now``. Returns the index just past its last sample (for :meth:`played_until`).

        Raises:
            ValueError: on an odd byte count.
        """
        if len(pcm) % 2:
            raise ValueError("pcm16 needs an even number of bytes")
        samples = np.frombuffer(pcm, dtype="<i2")
        if now > self._end:  # nothing queued: a new run starts now
            self._run += 1
            self.placements += 1
        start = max(now, self._end)
        self._segments.append(_Segment(start, samples, self.scheduled, self._run))
        self.scheduled += len(samples)
        self._end = start + len(samples) / RATE
        while self._segments and self._segments[0].end < now - self._keep_s:
            self._segments.popleft()
        return self.scheduled

    def played_until(self, index: int, at: float) -> None:
        """The far end finished playing the samples before ``index`` at ``at``: the first
        such report of a run moves the run (and what is queued behind it) by the difference,
        but never to start before the run before it ends."""
        for seg in self._segments:
            if seg.first < index <= seg.first + len(seg.samples):
                shift = at - (seg.start + (index - seg.first) / RATE)
                run = seg.run
                break
        else:
            return
        if run <= self._corrected_run:
            return
        self._corrected_run = run
        self.placements += shift != 0.0
        # the far end plays one run after another, never two at once: a run is never moved
        # to start before the one before it ends (an echo read early on a jittery clock)
        previous_end: float | None = None
        for seg in self._segments:
            if seg.run < run:
                previous_end = seg.end
                continue
            if previous_end is not None:  # the run's first segment
                shift, previous_end = max(shift, previous_end - seg.start), None
            seg.start += shift
        self._end += shift

    def stop(self, now: float) -> None:
        """Queued audio was dropped at ``now``: the 20 ms packet playing then plays to its
        end (a media server plays packets whole), nothing after it."""
        while self._segments and self._segments[-1].start >= now:
            self._segments.pop()
        if self._segments and self._segments[-1].end > now:
            seg = self._segments[-1]
            played = round((now - seg.start) * RATE)  # whole samples: no float residue
            seg.samples = seg.samples[: math.ceil(played / PACKET) * PACKET]
        self._end = min(self._end, self._segments[-1].end if self._segments else now)

    def audible(self, now: float, tail_s: float) -> bool:
        """Something played (or plays) within ``tail_s`` before ``now``."""
        return bool(self._segments) and self._end > now - tail_s

    def take(self, end: float, n: int = 160) -> bytes:
        """The ``n`` samples that played in ``[end - n/8000, end)``, as pcm16 bytes.

        Segments play in order, one after another (see :meth:`played_until`), so their starts
        rise: a binary search finds the last that starts before ``end``, and the walk back
        stops at the first that ended before the span (a call keeps 2 s and what is queued:
        20-60 segments; scanning them all cost several µs a caller frame)."""
        t0 = end - n / RATE
        segments = self._segments
        i = bisect.bisect_left(segments, end, key=_start) - 1
        if i >= 0:  # most spans lie inside one segment
            seg = segments[i]
            offset = round((t0 - seg.start) * RATE)
            if offset >= 0 and offset + n <= len(seg.samples):
                return seg.samples[offset : offset + n].tobytes()
        out = np.zeros(n, dtype="<i2")
        while i >= 0:
            seg = segments[i]
            if seg.start + len(seg.samples) / RATE <= t0:
                break
            offset = round((t0 - seg.start) * RATE)  # seg sample at out[0]
            lo, hi = max(0, -offset), min(n, len(seg.samples) - offset)
            if hi > lo:
                out[lo:hi] = seg.samples[offset + lo : offset + hi]
            i -= 1
        return out.tobytes()


def _start(seg: _Segment) -> float:
    return seg.start


class EchoCanceller:
    """WebRTC AEC3 with its high-pass filter, on pcm16 8 kHz mono (LiveKit's ``rtc`` binding
    of the WebRTC audio processing module; 10 ms frames inside).

    Costs about 0.1 ms of CPU per 20 ms frame on this project's benchmark machine, so the
    bridge runs it only while the agent's audio is playing or its echo may still arrive.
    """

    def __init__(self) -> None:
        from livekit import rtc  # loads the native library: only when echo cancelling is on

        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True, high_pass_filter=True)

    def process(self, near: bytes, far: bytes) -> bytes:
        """Caller audio ``near`` with the echo of ``far`` (what was playing when it was
        captured) removed. Both pcm16 8 kHz, the same length, a multiple of 10 ms.

        Raises:
            ValueError: lengths differ or are not whole 10 ms frames.
        """
        step = APM_FRAME * 2
        if len(near) != len(far) or len(near) % step:
            raise ValueError("near and far must be the same whole number of 10 ms frames")
        rtc = self._rtc
        out = bytearray()
        for i in range(0, len(near), step):
            self._apm.process_reverse_stream(rtc.AudioFrame(far[i : i + step], RATE, 1, APM_FRAME))
            frame = rtc.AudioFrame(near[i : i + step], RATE, 1, APM_FRAME)
            self._apm.process_stream(frame)
            out += frame.data.cast("B")
        return bytes(out)
