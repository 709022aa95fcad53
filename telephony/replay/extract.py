"""A recorded call (its call log and stereo WAV) cut into a :class:`~.scenario.Scenario`.

The caller's utterances are found on the recording's left channel by frame energy
(:func:`~telephony.simulate.audio_files.speech_segments`, with a 700 ms hangover so a pause
inside a sentence stays inside it) and cut with 100 ms before and 200 ms after. Each is timed
from the right channel (the agent as the caller heard it): over the agent's audio, it is a
barge-in at the seconds of agent audio heard since the caller last spoke; else it follows the
agent's reply after the quiet it left; before the agent ever spoke, at its call time. The
log's turns (:mod:`.facts`) give each caller turn its expectations: a log turn belongs to the
caller utterance that began last before its ``speech.stopped``.

Limits: the left channel is what the line sent, so on a line with loud echo the agent's echo
can be taken for a caller utterance (delete that turn by hand); the recorded agent audio is
what the caller heard (a reply cut by a barge-in is kept only up to the cut).
"""

from __future__ import annotations

import base64
import bisect
import wave
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import ulaw_encode
from ..simulate.audio_files import speech_segments
from .facts import CallFacts, TurnFacts, call_facts
from .scenario import (
    CallerTurn,
    CallExpectations,
    RecordedResponse,
    Scenario,
    ToolExpectation,
    Turn,
    TurnExpectations,
)

__all__ = ["HANGOVER_FRAMES", "assign_turns", "read_recording", "scenario_from_call"]

RATE = 8000
PACKET = 160  # samples in 20 ms
HANGOVER_FRAMES = 35  # 700 ms of quiet ends an utterance
PAD_BEFORE = 800  # samples (100 ms) kept before an utterance
PAD_AFTER = 1600  # and 200 ms after
BARGE_IN_WINDOW = 800  # agent audio within the 100 ms before the caller began: a barge-in


def read_recording(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A call recording's (caller, agent) channels: int16 arrays at 8 kHz. Raises ValueError
    when it is not the stereo 16-bit 8 kHz WAV ``RECORD_CALLS`` writes."""
    with wave.open(str(path)) as wav:
        shape = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        if shape != (2, 2, RATE):
            raise ValueError(f"{path}: {shape} (channels, bytes, Hz), not a call recording's")
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return samples[0::2].copy(), samples[1::2].copy()


def assign_turns(turns: list[TurnFacts], starts_ms: list[float]) -> list[list[TurnFacts]]:
    """The log's turns per scenario turn: index 0 the agent's opening, index k the caller's
    k-th utterance (which began at ``starts_ms[k-1]``, ms after the stream's start)."""
    out: list[list[TurnFacts]] = [[] for _ in range(len(starts_ms) + 1)]
    for turn in turns:
        if turn.stopped_at_ms is None:
            out[0].append(turn)
        else:
            out[bisect.bisect_left(starts_ms, turn.stopped_at_ms)].append(turn)
    return out


def _expectations(turns: list[TurnFacts]) -> TurnExpectations:
    tools = [ToolExpectation(name=t.name, arguments=t.arguments) for f in turns for t in f.tools]
    return TurnExpectations(tools=tools)


def _played(agent: np.ndarray, lo: int, hi: int) -> int:
    """20 ms packets of agent audio the caller heard in samples ``lo:hi``."""
    lo, hi = max(0, lo), max(0, min(hi, len(agent)))
    if hi <= lo:
        return 0
    chunk = agent[lo:hi]
    n = len(chunk) // PACKET
    return int(np.count_nonzero(np.any(chunk[: n * PACKET].reshape(n, PACKET) != 0, axis=1)))


def _timing(agent: np.ndarray, start: int, previous_end: int, first: bool) -> dict[str, float]:
    """When the caller's utterance at sample ``start`` is said (see :class:`CallerTurn`)."""
    heard = _played(agent, previous_end, start)
    before = np.flatnonzero(agent[: min(start, len(agent))])
    if first and heard == 0 and not len(before):
        return {"at_s": round(start / RATE, 2)}
    if _played(agent, start - BARGE_IN_WINDOW, start) or heard == 0:
        return {"heard_s": round(heard * PACKET / RATE, 2)}
    return {"quiet_s": round((start - int(before[-1])) / RATE, 2)}


def _responses(facts: CallFacts, agent: np.ndarray) -> list[RecordedResponse]:
    responses = [(t.index, r) for t in facts.turns for r in t.responses if r.response_id]
    starts = [r.audio_at_ms for _, r in responses if r.audio_at_ms is not None]
    out = []
    for turn, r in responses:
        audio = b""
        if r.audio_at_ms is not None:
            lo = int(r.audio_at_ms * RATE / 1000)
            later = [s for s in starts if s > r.audio_at_ms]
            hi = int(later[0] * RATE / 1000) if later else len(agent)
            heard = agent[lo:hi]
            loud = np.flatnonzero(heard)
            if len(loud):
                end = (int(loud[-1]) // PACKET + 1) * PACKET
                audio = ulaw_encode(heard[int(loud[0]) : int(loud[0]) + end].tobytes())
        tool = r.tools[0] if r.tools else None
        out.append(
            RecordedResponse(
                text=r.text,
                tool=ToolExpectation(name=tool.name, arguments=tool.arguments) if tool else None,
                audio=base64.b64encode(audio).decode("ascii"),
                turn=turn,
            )
        )
    return out


def scenario_from_call(records: list[dict[str, Any]], recording: Path, name: str = "") -> Scenario:
    """A scenario from a call log's records and its recording (``<CallSid>.wav``). Raises
    ValueError when the log is not a Media Streams call's or the WAV not a call recording."""
    facts = call_facts(records)
    caller, agent = read_recording(recording)
    caller_ulaw = ulaw_encode(caller.tobytes())
    segments = speech_segments(caller_ulaw, hangover_frames=HANGOVER_FRAMES)
    starts = [int(a * RATE) for a, _ in segments]
    ends = [int(b * RATE) for _, b in segments]
    by_turn = assign_turns(facts.turns, [s * 1000 / RATE for s in starts])
    opening = by_turn[0]
    turns = [
        Turn(
            expect=_expectations(opening),
            recorded_reply=" ".join(t.agent_text for t in opening).strip() or None,
        )
    ]
    for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
        lo = max(start - PAD_BEFORE, ends[k - 1] if k else 0)
        hi = min(end + PAD_AFTER, starts[k + 1] if k + 1 < len(starts) else len(caller))
        mine = by_turn[k + 1]
        latencies = [t.latency_ms for t in mine if t.latency_ms is not None]
        said = CallerTurn(
            text=" ".join(t.caller_text for t in mine).strip() or None,
            audio=base64.b64encode(caller_ulaw[lo:hi]).decode("ascii"),
            **_timing(agent, lo, ends[k - 1] if k else 0, first=k == 0),
        )
        turns.append(
            Turn(
                caller=said,
                expect=_expectations(mine),
                recorded_latency_ms=latencies[0] if latencies else None,
                recorded_reply=" ".join(t.agent_text for t in mine).strip() or None,
            )
        )
    expect = CallExpectations(
        hung_up_by=facts.hung_up_by,  # type: ignore[arg-type]
        end_reason=facts.end_reason,
        transfers=[str(t["destination"]) for t in facts.transfers],
        barge_ins=facts.barge_ins,
        suppressed=facts.suppressed,
        replies=facts.replies,
    )
    return Scenario(
        name=name or facts.call_sid,
        source={"call_sid": facts.call_sid, "recording": recording.name},
        turns=turns,
        dtmf=facts.dtmf,
        expect=expect,
        responses=_responses(facts, agent),
    )
