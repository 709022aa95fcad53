"""Per-call latency and cost measurements, kept by the call bridge (no I/O here).

Times are ``time.monotonic()`` seconds. The model's VAD reports speech in *audio* time (ms since
its session began receiving audio). We map that to the moment the bridge received the caller's
frame carrying it, so every latency here is measured on one clock: the bridge's.

- turn latency: caller's end of speech (the model's ``speech_stopped``) to our first outbound
  frame of the reply;
- model-to-wire: the model's first audio delta of an item to our first frame of it (what the
  bridge itself adds);
- barge-in reaction: caller's start of speech (``speech_started``) to the ``clear`` we send;
- greeting: ``start`` to the first outbound frame;
- processing: CPU time per 20 ms frame in the bridge (parse + transcode), in µs; kept as
  histogram counts, so a call's memory does not grow with its length.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["CallMetrics"]

FRAME_MS = 20
ARRIVALS_KEPT = 15_000  # 5 minutes of frames: VAD events refer to recent audio only
# per-frame CPU times go into log-spaced bins from 1 µs to 100 ms (about 3 % wide), so memory
# stays constant however long the call is
_US_EDGES = np.geomspace(1.0, 100_000.0, 400)
_US_EDGE_LIST = _US_EDGES.tolist()  # (bisect on a list: a fifth of np.searchsorted's cost)


class _Histogram:
    def __init__(self) -> None:
        # a list: adding to a numpy array's element costs about 1 µs a frame, to a list's 0.1
        self.counts = [0] * (len(_US_EDGES) + 1)

    def add(self, us: float, n: int = 1) -> None:
        self.counts[bisect.bisect_left(_US_EDGE_LIST, us)] += n

    def percentile(self, q: float) -> float | None:
        total = sum(self.counts)
        if not total:
            return None
        index = int(np.searchsorted(np.cumsum(self.counts), q / 100 * total))
        return round(float(_US_EDGES[min(index, len(_US_EDGES) - 1)]), 2)


class CallMetrics:
    def __init__(
        self, started_at: float, on_frame: Callable[[str, float, int], None] | None = None
    ) -> None:
        self.started_at = started_at
        # ("in" | "out", seconds a frame, frames), for service-wide histograms
        self._on_frame = on_frame
        self._arrivals: deque[float] = deque(maxlen=ARRIVALS_KEPT)  # recent caller frames
        self._frames = 0  # caller frames so far
        self._session_first_frame = 0  # index of the first frame the current session heard
        self.speech_end_frame = -1  # caller frame at the model's last reported end of speech
        self._speech_end: float | None = None  # pending end of speech, not yet answered
        self._speech_start: float | None = None  # pending start of speech, not yet cleared
        self._item_delta_at: dict[str, float] = {}
        self._items_out: set[str] = set()
        self.greeting_ms: float | None = None
        self.turn_latency_ms: list[float] = []
        self.model_to_wire_ms: list[float] = []
        self.barge_in_ms: list[float] = []
        self._in_us = _Histogram()
        self._out_us = _Histogram()

    # caller side
    def frame_arrived(self, now: float) -> None:
        self._arrivals.append(now)
        self._frames += 1

    def inbound_processing(self, seconds: float) -> None:
        self._in_us.add(seconds * 1e6)
        if self._on_frame is not None:
            self._on_frame("in", seconds, 1)

    def outbound_processing(self, seconds: float, frames: int) -> None:
        if frames:
            self._out_us.add(seconds * 1e6 / frames, frames)
            if self._on_frame is not None:
                self._on_frame("out", seconds / frames, frames)

    @property
    def frames(self) -> int:
        """Caller frames forwarded so far."""
        return self._frames

    def session_started(self, first_frame: int | None = None) -> None:
        """A model session took the call: its audio clock starts at caller frame
        ``first_frame`` (0-based; default: the next frame). Held or replayed caller audio
        makes it earlier than the next."""
        self._session_first_frame = self._frames if first_frame is None else first_frame

    def _arrival_of(self, audio_ms: int | float | None) -> float | None:
        if audio_ms is None or not self._arrivals:
            return None
        index = self._session_first_frame + max(int(audio_ms) // FRAME_MS - 1, 0)
        oldest = self._frames - len(self._arrivals)  # frame number of _arrivals[0]
        return self._arrivals[min(max(index - oldest, 0), len(self._arrivals) - 1)]

    # model side
    def speech_started(self, audio_ms: int | None) -> None:
        self._speech_start = self._arrival_of(audio_ms)

    def speech_stopped(self, audio_ms: int | None) -> None:
        self._speech_end = self._arrival_of(audio_ms)
        if audio_ms is not None:
            self.speech_end_frame = self._session_first_frame + int(audio_ms) // FRAME_MS

    def model_delta(self, item_id: str, now: float) -> None:
        self._item_delta_at.setdefault(item_id, now)

    def frame_sent(self, item_id: str, now: float) -> dict[str, float] | None:
        """The first frame of an item went out; returns the latencies it completes, if any."""
        if item_id in self._items_out:
            return None
        self._items_out.add(item_id)
        result: dict[str, float] = {}
        delta_at = self._item_delta_at.pop(item_id, None)
        if delta_at is not None:
            result["model_to_wire_ms"] = round((now - delta_at) * 1000, 2)
            self.model_to_wire_ms.append(result["model_to_wire_ms"])
        if self.greeting_ms is None and not self.turn_latency_ms and self._speech_end is None:
            self.greeting_ms = round((now - self.started_at) * 1000, 1)
            result["greeting_ms"] = self.greeting_ms
        if self._speech_end is not None:
            result["turn_latency_ms"] = round((now - self._speech_end) * 1000, 1)
            self.turn_latency_ms.append(result["turn_latency_ms"])
            self._speech_end = None
        return result or None

    def clear_sent(
        self, now: float, playing: bool, speech_start: float | None = None
    ) -> float | None:
        """A ``clear`` went out; returns the barge-in reaction (ms) when audio was playing.
        ``speech_start``: when the caller's speech began by our own detector, when it heard it
        before the model's VAD (whichever is earlier counts)."""
        start, self._speech_start = self._speech_start, None
        if speech_start is not None:
            start = speech_start if start is None else min(start, speech_start)
        if start is None or not playing:
            return None
        reaction = round((now - start) * 1000, 1)
        self.barge_in_ms.append(reaction)
        return reaction

    def summary(self) -> dict[str, Any]:
        """The figures for ``call.end``."""

        def pct(values: list[float], q: float) -> float | None:
            return round(float(np.percentile(values, q)), 2) if values else None

        return {
            "greeting_ms": self.greeting_ms,
            "turn_latency_ms": self.turn_latency_ms,
            "turn_latency_p50_ms": pct(self.turn_latency_ms, 50),
            "model_to_wire_p50_ms": pct(self.model_to_wire_ms, 50),
            "model_to_wire_max_ms": max(self.model_to_wire_ms, default=None),
            "barge_in_ms": self.barge_in_ms,
            "frame_in_us_p50": self._in_us.percentile(50),
            "frame_in_us_p99": self._in_us.percentile(99),
            "frame_out_us_p50": self._out_us.percentile(50),
            "frame_out_us_p99": self._out_us.percentile(99),
        }
