"""What happened on a call, read from its call log: turns, tool calls, barge-ins, the end.

A turn begins at the first ``response.started`` after the caller stopped speaking
(``speech.stopped``); turn 0 is what the agent said before the caller first spoke (the
greeting). Everything the agent did until the next turn belongs to it: its responses, tool
calls (``tool.start``), the transcript of what it said (``transcript.agent``) and hand-offs.
The recording and its replay are both read this way, so their turns line up.

A GPT-Live call's log (``stream.start`` with ``backend: live``) is read the same way from its
own records: the caller's words (``live.input_transcript.delta``) end their turn, the agent's
speech (``agent.speech_started``) is a response, ``tool.call`` a tool call and
``live.output_transcript.delta`` what it said. GPT-Live decides itself when to yield, so the
bridge sees no barge-in there: ``barge_ins`` and ``suppressed`` are None.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..observability.call_log import seconds_between

__all__ = ["CallFacts", "ResponseFacts", "ToolCallFacts", "TurnFacts", "call_facts"]


@dataclass
class ToolCallFacts:
    """One tool call: its name and arguments (the JSON object the model sent)."""

    name: str
    arguments: dict[str, Any]


@dataclass
class ResponseFacts:
    """One model response: its id, its items' transcript, tool calls made while it was the
    latest response, and where its audio began (ms after the stream's ``start``; None: no
    audio)."""

    response_id: str
    text: str = ""
    tools: list[ToolCallFacts] = field(default_factory=list)
    audio_at_ms: float | None = None


@dataclass
class TurnFacts:
    """One turn: what the caller said (their transcript; "" for turn 0) and the agent's
    responses. ``latency_ms``: from the caller's ``speech.stopped`` to the agent's first
    audio of the turn (None for turn 0 or no audio)."""

    index: int
    caller_text: str = ""
    stopped_at_ms: float | None = None
    responses: list[ResponseFacts] = field(default_factory=list)

    @property
    def tools(self) -> list[ToolCallFacts]:
        return [t for r in self.responses for t in r.tools]

    @property
    def agent_text(self) -> str:
        return " ".join(r.text for r in self.responses if r.text).strip()

    @property
    def latency_ms(self) -> float | None:
        first = next((r.audio_at_ms for r in self.responses if r.audio_at_ms is not None), None)
        if first is None or self.stopped_at_ms is None:
            return None
        return round(first - self.stopped_at_ms, 1)


@dataclass
class CallFacts:
    """A call as its log tells it. Times are ms after the stream's ``start`` record."""

    call_sid: str
    turns: list[TurnFacts]
    hung_up_by: str  # "agent" (end_call), "caller", or "" (the stream closed otherwise)
    end_reason: str
    transfers: list[dict[str, Any]]  # destination and mode of each transfer
    barge_ins: int | None  # the caller's speech cut the agent off (None: not seen, GPT-Live)
    suppressed: int | None  # a pause for caller speech that resumed (echo, a backchannel, noise)
    dtmf: list[tuple[float, str]]  # (seconds after start, digit)
    started_ts: float
    backend: str = ""  # "live" for GPT-Live

    @property
    def replies(self) -> int:
        """Turns in which the agent said something."""
        return sum(1 for t in self.turns if any(r.audio_at_ms is not None for r in t.responses))


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {"_raw": str(raw)}
    return value if isinstance(value, dict) else {"_value": value}


def call_facts(records: list[dict[str, Any]]) -> CallFacts:
    """Read a call log (its records in order, as ``read_call_log`` gives them). Raises
    ValueError when it has no ``stream.start`` (not a Media Streams call log)."""
    start = next((r for r in records if r.get("event") == "stream.start"), None)
    if start is None:
        raise ValueError("the log has no stream.start record: not a Media Streams call")
    t0 = float(start["ts"])

    def at(record: dict[str, Any]) -> float:
        return round(seconds_between(start, record) * 1000, 1)

    turns = [TurnFacts(0)]
    by_response: dict[str, ResponseFacts] = {}
    item_response: dict[str, ResponseFacts] = {}
    pending_stop: float | None = None
    caller_text = ""
    live = start.get("backend") == "live"
    facts = CallFacts(str(start.get("call_sid", "")), turns, "", "", [], 0, 0, [], t0)
    if live:
        facts.backend, facts.barge_ins, facts.suppressed = "live", None, None

    def next_turn() -> None:  # the agent acts after the caller stopped: their turn begins
        nonlocal pending_stop, caller_text
        if pending_stop is not None:
            turns.append(TurnFacts(len(turns), caller_text, pending_stop))
            pending_stop, caller_text = None, ""

    for r in records:
        event = r.get("event")
        if event == "speech.stopped":
            pending_stop = at(r)
        elif event in ("transcript.caller", "live.input_transcript.delta"):
            caller_text = (caller_text + " " + str(r.get("text", ""))).strip()
            if live:
                pending_stop = at(r)
        elif event in ("response.started", "agent.speech_started"):
            next_turn()
            response = ResponseFacts(str(r.get("response_id", r.get("response", ""))))
            by_response[response.response_id] = response
            turns[-1].responses.append(response)
            if live:
                response.audio_at_ms = at(r)
        elif event == "live.output_transcript.delta" and turns[-1].responses:
            response = turns[-1].responses[-1]
            response.text = (response.text + " " + str(r.get("text", ""))).strip()
        elif event == "model.audio":
            response = by_response.get(str(r.get("response_id", "")))
            if response is not None:
                item_response[str(r.get("item_id", ""))] = response
                if response.audio_at_ms is None:
                    response.audio_at_ms = at(r)
        elif event == "transcript.agent":
            response = item_response.get(str(r.get("item_id", "")))
            if response is not None:
                response.text = (response.text + " " + str(r.get("text", ""))).strip()
        elif event in ("tool.start", "tool.call"):
            if event == "tool.call":  # GPT-Live's delegate: before the agent speaks again
                next_turn()
            name = r.get("tool", r.get("name", ""))
            call = ToolCallFacts(str(name), _arguments(r.get("arguments")))
            if not turns[-1].responses:  # (GPT-Live's: the delegation, before any speech)
                turns[-1].responses.append(ResponseFacts(str(r.get("delegation_id", ""))))
            turns[-1].responses[-1].tools.append(call)
        elif event == "hangup.requested":
            facts.hung_up_by = "agent"
        elif event == "call.transfer":
            facts.transfers.append({"destination": r.get("destination"), "mode": r.get("mode")})
        elif event == "barge_in.interruption" and facts.barge_ins is not None:
            facts.barge_ins += 1
        elif event == "playback.resumed" and r.get("caller_ms") is not None and not live:
            facts.suppressed = (facts.suppressed or 0) + 1
        elif event == "dtmf":
            facts.dtmf.append((round(at(r) / 1000, 2), str(r.get("digit", ""))))
        elif event == "call.end":
            facts.end_reason = str(r.get("reason", ""))
            if not facts.hung_up_by and facts.end_reason == "caller_hangup":
                facts.hung_up_by = "caller"
    return facts
