"""GPT-Live's server events, as one call's log and transcript see them.

Every event but an audio delta becomes a ``live.<type>`` record with the fields that matter
(transcript text and its span, the delegation's id, an ``error``'s code, message and
``client_event_id``, an ``info``, the usage, a close's reason); an event type the client does
not know is logged as ``live.unknown`` with its type and changes nothing. Transcript deltas are
joined into turns (GPT-Live sends no turn events: a turn is the run of one speaker's
fragments), which seed a replacement session. Usage is cumulative per session ("do not sum"):
each session's last figure is added once, when it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LiveEvents", "Transcript"]

KEPT_TURNS = 256
KNOWN = frozenset({
    "session.started", "session.updated", "session.closed", "session.usage.updated",
    "session.input_transcript.delta", "session.output_transcript.delta",
    "session.commentary.appended", "session.thinking.appended",
    "session.instructions.appended", "session.delegation.created", "response.event",
    "session.input_audio.muted", "session.input_audio.unmuted", "error", "info",
    "session.output_audio.fixture.playing", "session.output_audio.fixture.played",
})  # fmt: skip


@dataclass
class Transcript:
    """The call's words so far as ``(role, text)`` turns, ``user`` (the caller) or
    ``assistant`` (the agent), oldest first, at most :data:`KEPT_TURNS`."""

    turns: list[tuple[str, str]] = field(default_factory=list)

    def add(self, role: str, text: str) -> None:
        if not text:
            return
        if self.turns and self.turns[-1][0] == role:
            self.turns[-1] = (role, self.turns[-1][1] + text)
        else:
            self.turns.append((role, text))
            del self.turns[:-KEPT_TURNS]


class LiveEvents:
    """Logs one call's GPT-Live server events and keeps what ``call.end`` reports.

    Args:
        record: writes a call-log record.
        transcript: where the transcript deltas go.
    """

    def __init__(self, record: Callable[..., Any], transcript: Transcript) -> None:
        self._record = record
        self._transcript = transcript
        self.errors = 0
        self.session_ids: list[str] = []
        self.tokens: dict[str, Any] = {"live_seconds": 0.0}

    def on_event(self, event: Any) -> None:
        """One server event (typed by the ``openai`` package; not an audio delta)."""
        kind = str(getattr(event, "type", ""))
        if kind not in KNOWN:
            self._record("live.unknown", type=kind[:80])
            return
        fields: dict[str, Any] = {}
        if kind in ("session.input_transcript.delta", "session.output_transcript.delta"):
            role = "user" if kind.startswith("session.input") else "assistant"
            self._transcript.add(role, event.delta)
            fields = {"text": event.delta, "start_ms": event.start_ms, "end_ms": event.end_ms}
        elif kind == "session.delegation.created":
            fields = {"delegation_id": event.delegation.id, "offset_ms": event.offset_ms}
        elif kind == "response.event":
            fields = {"delegation_id": event.delegation_id, "inner": event.event.get("type")}
        elif kind == "error":
            self.errors += 1
            error = event.error
            fields = {"code": error.code, "message": error.message,
                      "client_event_id": error.client_event_id}  # fmt: skip
        elif kind == "info":
            fields = {"code": event.code, "message": event.message}
        elif kind == "session.usage.updated":
            fields = {"usage": event.usage.model_dump(exclude_none=True)}
        elif kind == "session.closed":
            fields = {"reason": event.reason}
        elif kind.endswith(".appended"):
            fields = {"client_event_id": getattr(event, "client_event_id", None)}
        self._record(f"live.{kind.removeprefix('session.')}", **fields)

    def add_usage(self, usage: dict[str, Any]) -> None:
        """A session ended with ``usage`` (its cumulative figures): its active seconds count
        (``active_seconds`` where reported, else ``seconds``)."""
        seconds = usage.get("active_seconds", usage.get("seconds")) or 0.0
        self.tokens["live_seconds"] = round(self.tokens["live_seconds"] + float(seconds), 3)

    def add_tokens(self, tokens: dict[str, int]) -> None:
        """A session's delegate tokens (by kind), once."""
        for kind, count in tokens.items():
            self.tokens[kind] = self.tokens.get(kind, 0) + count
