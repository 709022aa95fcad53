"""A scenario file: a call's caller side and what the agent must do, as JSON.

The caller's turns are audio (μ-law 8 kHz, base64, cut from a recording's left channel) or
text (spoken by the offline model's voice, Piper, when the scenario runs), each timed as the
caller timed it: at a call time (before the agent first spoke), after the agent's reply and
``quiet_s`` of quiet, or over the agent's reply once ``heard_s`` of it played (a barge-in).
Expectations are per turn (tool calls, words the reply must or must not contain) and for
the call (who hung up, the ``call.end`` reason, transfers, barge-ins, replies); a field left
out (or null) is not checked, so an expectation is relaxed by deleting it. The recorded
agent side (each response's transcript, tool calls and audio) lets the scripted loopback
model replay the call exactly.

A scenario cut from a call holds the caller's voice: personal data, kept like the recording.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "SCENARIO_VERSION",
    "CallExpectations",
    "CallerTurn",
    "RecordedResponse",
    "Scenario",
    "ToolExpectation",
    "TurnExpectations",
]

SCENARIO_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallerTurn(_Strict):
    """What the caller says next, and when.

    Exactly one of ``audio`` (μ-law 8 kHz, base64) or ``text`` (spoken by Piper at run time)
    is needed; with audio, ``text`` is what was heard (a note). Timing: ``at_s`` (seconds
    after the stream's start; only for the first turn, said before the agent spoke), else
    ``heard_s`` (seconds of the agent's audio played since the caller last spoke: a
    barge-in), else after the agent's reply and ``quiet_s`` seconds of quiet (a first turn
    timed so waits for the greeting: give it ``at_s`` when the agent has none).
    """

    text: str | None = None
    audio: str | None = Field(default=None, repr=False)
    at_s: float | None = Field(default=None, ge=0)
    heard_s: float | None = Field(default=None, ge=0)
    quiet_s: float = Field(default=0.6, ge=0)

    @model_validator(mode="after")
    def _something_said(self) -> CallerTurn:
        if not self.audio and not self.text:
            raise ValueError("a caller turn needs audio or text")
        return self

    def ulaw(self) -> bytes | None:
        """The turn's recorded audio, μ-law 8 kHz bytes (None: a text turn)."""
        return base64.b64decode(self.audio) if self.audio else None


class ToolExpectation(_Strict):
    """A tool call the agent must make: its name, and (when given) arguments it must carry
    (each key's value compared, text case-insensitively; keys not listed are not checked)."""

    name: str
    arguments: dict[str, Any] | None = None


class TurnExpectations(_Strict):
    """What the agent does in one turn. ``tools``: the calls it must make, in order (an
    empty list: it must make none; null: not checked); ``says`` / ``never_says``: words its
    transcript must contain / must not contain (case-insensitive)."""

    tools: list[ToolExpectation] | None = None
    says: list[str] = Field(default_factory=list)
    never_says: list[str] = Field(default_factory=list)


class RecordedResponse(_Strict):
    """One response of the recorded agent, for the scripted loopback model: its transcript,
    its tool call (name and arguments) if any, and its audio as the caller heard it (μ-law
    8 kHz, base64)."""

    text: str = ""
    tool: ToolExpectation | None = None
    audio: str = Field(default="", repr=False)
    turn: int | None = Field(
        default=None, ge=0
    )  # the call's turn (0: the opening); None: older files


class CallExpectations(_Strict):
    """How the call goes as a whole; null: not checked."""

    hung_up_by: Literal["agent", "caller", ""] | None = None
    end_reason: str | None = None
    transfers: list[str] | None = None  # destinations, in order
    barge_ins: int | None = None
    suppressed: int | None = None
    replies: int | None = None


class Turn(_Strict):
    """One turn: the caller's words (none for turn 0, the greeting), what the agent must
    do, and what it did when recorded (latency in ms, transcript: for the report)."""

    caller: CallerTurn | None = None
    expect: TurnExpectations = Field(default_factory=TurnExpectations)
    recorded_latency_ms: float | None = None
    recorded_reply: str | None = None


class Scenario(_Strict):
    """A call to replay. ``dtmf``: keys as ``[seconds after start, digit]``; ``responses``:
    the recorded agent, for ``--model loopback``; ``source``: where it was cut from."""

    scenario: int = SCENARIO_VERSION
    name: str = ""
    source: dict[str, Any] = Field(default_factory=dict)
    turns: list[Turn]
    dtmf: list[tuple[float, str]] = Field(default_factory=list)
    expect: CallExpectations = Field(default_factory=CallExpectations)
    responses: list[RecordedResponse] = Field(default_factory=list)

    @model_validator(mode="after")
    def _turn_zero_is_the_agent(self) -> Scenario:
        if self.scenario != SCENARIO_VERSION:
            raise ValueError(f"scenario version {self.scenario}: this release reads 1")
        if not self.turns or self.turns[0].caller is not None:
            raise ValueError("turns[0] is the agent's opening (no caller words)")
        if any(t.caller is None for t in self.turns[1:]):
            raise ValueError("every turn after the first has caller words")
        return self

    @classmethod
    def load(cls, path: Path) -> Scenario:
        """Read a scenario file; raises ValueError (pydantic's, naming the field) when it is
        not one."""
        scenario = cls.model_validate_json(Path(path).read_text())
        return scenario.model_copy(update={"name": scenario.name or Path(path).stem})

    def save(self, path: Path) -> None:
        """Write it as indented JSON, owner-only (0600: it may hold a caller's voice)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.model_dump(mode="json", exclude_none=False), indent=2)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(text + "\n")
