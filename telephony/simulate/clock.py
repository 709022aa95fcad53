"""The simulated Twilio's clocks: call time is read on ``time.monotonic()``, call log records
carry ``time.time()``."""

from __future__ import annotations

import math
import time

__all__ = ["clock_pair"]


def clock_pair(tries: int = 5) -> tuple[float, float]:
    """``time.monotonic()`` and ``time.time()`` at one instant, seconds: of ``tries`` reads of
    the wall clock between two monotonic ones, the closest pair (a process stopped between two
    plain reads would skew every record's call time by the stop)."""
    best = (math.inf, 0.0, 0.0)
    for _ in range(tries):
        before = time.monotonic()
        wall = time.time()
        after = time.monotonic()
        if after - before < best[0]:
            best = (after - before, (before + after) / 2, wall)
    return best[1], best[2]
