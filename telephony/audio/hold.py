"""A soft hold sound for the caller while the agent's tool runs: μ-law 8 kHz, a loop.

Two quiet, rounded tones (E5 then C5, 120 ms each, -30 dBFS) and silence, repeating every
1.2 s: enough to say "still here" without sounding like speech to anyone's VAD, and nothing
like a ringback or a busy tone. Knows nothing of Twilio or OpenAI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .g711 import ulaw_encode

__all__ = ["LOOP_MS", "default_hold_sound", "load_hold_sound"]

RATE = 8000
LOOP_MS = 1200
FRAME_BYTES = 160


def default_hold_sound() -> bytes:
    """The default loop (μ-law 8 kHz bytes, a whole number of 20 ms frames)."""
    out = np.zeros(RATE * LOOP_MS // 1000)
    amplitude = 32768 * 10 ** (-30 / 20)
    n = RATE * 120 // 1000
    envelope = np.sin(np.linspace(0.0, np.pi, n)) ** 2  # no clicks
    t = np.arange(n) / RATE
    for start_ms, freq in ((0, 659.25), (160, 523.25)):
        start = RATE * start_ms // 1000
        out[start : start + n] += amplitude * envelope * np.sin(2 * np.pi * freq * t)
    return ulaw_encode(np.rint(out).astype("<i2").tobytes())


def load_hold_sound(path: Path | None) -> bytes:
    """The loop in ``path`` (headerless μ-law 8 kHz, as ``sox in.wav -r 8000 -c 1 -e u-law
    -t raw hold.ulaw`` writes it), trimmed to whole 20 ms frames; the default when None.

    Raises:
        ValueError: the file holds less than one 20 ms frame.
        OSError: it cannot be read.
    """
    if path is None:
        return default_hold_sound()
    data = path.read_bytes()
    usable = len(data) - len(data) % FRAME_BYTES
    if usable == 0:
        raise ValueError(f"{path} holds less than 20 ms of μ-law audio")
    return data[:usable]
