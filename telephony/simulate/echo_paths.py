"""Echo paths for the simulated caller's line: flat, the G.168 line hybrids, speakerphone rooms.

Each path is an impulse response at 8 kHz (float taps) scaled to unit energy, so the
:class:`~telephony.simulate.Echo`'s ``gain_db`` is the echo return loss for white noise:
``-6`` is the worst hybrid ITU-T G.168 lets a network present, ``-30`` a good line.

- :func:`hybrid_path`: the eight hybrid echo path models of ITU-T G.168 Annex D (D.2-D.9),
  a few ms long, from ``g168_paths.json`` (written by ``bench/g168_paths.py`` from SpanDSP's
  copy of the tables).
- :func:`room_path`: a speakerphone in a room: the direct sound, then a reverberant tail of
  exponentially decaying noise reaching -60 dB after ``t60_s`` (seeded: the same path every run).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

__all__ = ["HYBRIDS", "hybrid_path", "room_path"]

RATE = 8000
HYBRIDS = ("D2", "D3", "D4", "D5", "D6", "D7", "D8", "D9")


@cache
def _models() -> dict[str, list[int]]:
    data = json.loads((Path(__file__).with_name("g168_paths.json")).read_text(encoding="utf-8"))
    return data["paths"]


def _unit(taps: np.ndarray) -> tuple[float, ...]:
    return tuple(float(t) for t in taps / np.sqrt(np.sum(taps**2)))


def hybrid_path(model: str) -> tuple[float, ...]:
    """G.168 Annex D hybrid echo path ``model`` ("D2" .. "D9"), unit energy, 8 kHz taps.

    Raises:
        KeyError: an unknown model name.
    """
    return _unit(np.asarray(_models()[model.upper()], dtype=np.float64))


def room_path(t60_s: float, direct_ratio_db: float = 0.0, seed: int = 7) -> tuple[float, ...]:
    """A speakerphone room: a direct-path tap, then Gaussian noise decaying by 60 dB over
    ``t60_s`` seconds (the path is ``t60_s`` long), the direct sound ``direct_ratio_db`` above the
    reverberant energy; unit energy, 8 kHz taps.

    Raises:
        ValueError: ``t60_s`` not in (0, 2].
    """
    if not 0 < t60_s <= 2:
        raise ValueError("t60_s must be in (0, 2] seconds")
    n = int(t60_s * RATE)
    t = np.arange(n) / RATE
    tail = np.random.default_rng(seed).normal(0.0, 1.0, n) * 10 ** (-3 * t / t60_s)
    tail[0] = 0.0
    tail *= np.sqrt(10 ** (-direct_ratio_db / 10) / np.sum(tail**2))
    tail[0] = 1.0  # the direct sound
    return _unit(tail)
