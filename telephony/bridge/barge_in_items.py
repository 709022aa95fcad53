"""The barge-in guard's records of one call: caller speech heard over the agent, and the
model's VAD items (see :mod:`telephony.bridge.barge_in`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .turn_words import asks_for_the_turn, asks_to_stop

__all__ = ["CallerSpeech", "VadItem", "WordEdges", "item_kind"]

HEAD_FRAMES = 2  # a word's onset toward a pause: frames just before WORD_FRAMES in a row
TAIL_FRAMES = 4  # a word's fading tail toward a pause: frames just after
WORD_FRAMES = 3  # speech frames in a row that make a word, not a stray frame


@dataclass
class CallerSpeech:
    """Caller sound heard while the agent's audio played."""

    started_at: float
    speech_ms: int = 0
    raw_ms: int = 0  # before echo cancelling
    edge_ms: int = 0  # a word's onset and tail over loud echo (WordEdges; toward a pause only)
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
    stopped_ms: int = 0  # the caller's audio clock when the model's VAD stopped it
    outlasted: bool = True  # the agent's audio went on past the caller's speech
    speech_ms: int = 0  # the caller's speech beyond the echo in it (our detector), at its stop
    transcript: str | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)


class WordEdges:
    """A word's edges over a learned line's loud echo, counted toward a pause only.

    A short word ("Wait,", 240 ms) over loud echo is speech beyond the echo only in its
    middle: its onset and its fading tail are voiced (our detector hears speech) with part of
    their power beyond the echo, under the judge's threshold. Once the caller's speech has
    run :data:`WORD_FRAMES` frames in a row (a word, not a stray frame: echo alone on a
    learned line makes no such run), such frames among the :data:`HEAD_FRAMES` just before
    the run and the :data:`TAIL_FRAMES` just after it count toward the pause. Per frame, on
    the caller's audio clock."""

    def __init__(self) -> None:
        self._run = 0  # speech frames in a row
        self._head = 0  # edge frames since the last frame that was neither speech nor edge
        self._tail = 0  # frames left that may be the last word's tail

    def frame(self, speech: bool, edge: bool) -> int:
        """One caller frame: ``speech`` (beyond the echo), ``edge`` (voiced, with sound
        beyond the echo, on a learned line; not ``speech``). Returns the frames
        (0-``HEAD_FRAMES``) to count toward the pause now."""
        if speech:
            self._run += 1
            if self._run < WORD_FRAMES:
                self._tail = max(0, self._tail - 1)
                return 0
            self._tail = TAIL_FRAMES
            head = self._head if self._run == WORD_FRAMES else 0  # the word's onset, once
            self._head = 0
            return min(head, HEAD_FRAMES)
        self._run = 0
        tail = edge and self._tail > 0
        self._tail = max(0, self._tail - 1)
        self._head = 0 if not edge else self._head + (not tail)
        return int(tail)


def item_kind(item: VadItem, kind: str | None, short: bool, pause_ms: int) -> str | None:
    """Why a guarded item that did not interrupt by its length is no turn: ``kind``, what its
    words make it (:func:`~telephony.bridge.turn_words.kind_of`; None: a turn), weighed with
    the caller's speech in it (``short``: under ``min_speech_ms`` with the agent talking on
    past it; ``pause_ms``: the guard's). Returns ``"noise"``, ``"short_speech"``,
    ``"backchannel"``, ``"echo"`` or None (a turn)."""
    if kind is None and item.echo and item.outlasted and item.speech_ms < pause_ms:
        # over the agent, with the line's echo learned, the caller spoke too little beyond
        # it even to pause the agent: a cough or a click that a recogniser made words of
        # (a bench run: a cough over room echo heard as "Open." cut the reply)
        kind = "noise"
    if (
        kind is None
        and item.echo_found
        and short
        and not asks_to_stop(item.transcript)
        and (
            item.speech_ms < pause_ms
            or (item.found_first and not asks_for_the_turn(item.transcript))
        )
    ):
        # the agent's echo before the judge learned the line and a short sound of the
        # caller's: words are the echo's ("I am here fucking" for a "yeah"), but for one
        # that asks it to stop; even a turn word ("I'm not your walking."), or words of an
        # item begun on the echo's first syllable, if too short to pause the agent
        kind = "short_speech"
    if kind in ("backchannel", "short_speech") and not item.outlasted:
        kind = None  # the agent had finished: a short answer is a turn
    return kind
