"""The barge-in guard's records of one call: caller speech heard over the agent, and the
model's VAD items (see :mod:`telephony.bridge.barge_in`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

__all__ = ["CallerSpeech", "VadItem"]


@dataclass
class CallerSpeech:
    """Caller sound heard while the agent's audio played."""

    started_at: float
    speech_ms: int = 0
    raw_ms: int = 0  # before echo cancelling
    tail_ms: int = 0  # a word's fading tail over loud echo (toward a pause only)
    quiet_ms: int = 0  # since the last speech frame
    paused: bool = False
    resumed: bool = False  # a pause of it was taken back
    resumed_ms: int = 0  # speech_ms when it was
    interrupted: bool = False
    ended: bool = False  # quiet since; more speech within MERGE_MS continues it


@dataclass
class VadItem:
    """A caller audio item of the model's VAD (``speech_started`` .. ``committed``)."""

    guarded: bool  # it began while the agent's audio played
    started_ms: int = 0  # the caller's audio clock when the model's VAD said so
    echo: bool = False  # it began while echo could arrive, with the line's echo learned
    early: bool = False  # it began while echo could arrive, before the judge learned the line
    echo_found: bool = False  # and the line's echo was found by its end (the presence test)
    found_first: bool = False  # found already when it began
    real: bool = False  # decided a real turn
    stopped: bool = False
    outlasted: bool = True  # the agent's audio went on past the caller's speech
    speech_ms: int = 0  # the caller's speech beyond the echo in it (our detector), at its stop
    transcript: str | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)
