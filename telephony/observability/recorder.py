"""Recording a realtime session's events into a call log, the same on every call path.

Media Streams and SIP calls both feed their session's events to a :class:`SessionRecorder`,
which writes transcripts, responses, tool calls, handoffs, VAD events and model errors, and keeps
the conversation so far (for a reconnect) and response counters (for ``end_call``). Audio events
are the caller's concern.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["SessionRecorder"]


class SessionRecorder:
    """Turns session events into call-log records through ``record(event, **fields)``."""

    def __init__(
        self, record: Callable[..., Any], on_vad: Callable[[str, int | None], None] | None = None
    ) -> None:
        self._record = record
        self._on_vad = on_vad  # ("speech_started" | "speech_stopped", audio ms)
        self.usage: dict[str, int] = {}  # token counts the model reported
        self.conversation: list[tuple[str, str]] = []  # (role, text)
        self.responses_started = 0
        self.responses_ended = 0
        self.model_errors = 0
        self._agent_parts: dict[str, list[str]] = {}

    def on_event(self, event: Any) -> None:
        """One ``RealtimeSession`` event (audio events are ignored here)."""
        kind = event.type
        if kind == "tool_start":
            self._record("tool.start", tool=event.tool.name, arguments=event.arguments)
        elif kind == "tool_end":
            self._record("tool.end", tool=event.tool.name, output=str(event.output)[:500])
        elif kind == "handoff":
            self._record("handoff", from_agent=event.from_agent.name, to_agent=event.to_agent.name)
        elif kind == "error":
            self.model_errors += 1
            self._record("model.error", where="event", error=str(event.error)[:500])
        elif kind == "audio_end":
            self.agent_said(event.item_id)
        elif kind == "raw_model_event":
            self._on_model_event(event.data)

    def _on_model_event(self, data: Any) -> None:
        kind = data.type
        if kind == "input_audio_transcription_completed":
            self._record("transcript.caller", item_id=data.item_id, text=data.transcript)
            if data.transcript:
                self.conversation.append(("user", data.transcript))
        elif kind == "transcript_delta":
            self._agent_parts.setdefault(data.item_id, []).append(data.delta)
        elif kind == "turn_started":
            self.responses_started += 1
            self._record("response.started", response_id=data.response_id)
        elif kind == "turn_ended":
            self.responses_ended += 1
            self._record("response.done", response_id=data.response_id)
            for item_id in list(self._agent_parts):
                self.agent_said(item_id)
        elif kind == "raw_server_event":
            server_type = data.data.get("type") if isinstance(data.data, dict) else None
            if server_type == "input_audio_buffer.speech_started":
                at = data.data.get("audio_start_ms")
                self._record("speech.started", audio_start_ms=at)
                if self._on_vad:
                    self._on_vad("speech_started", at)
            elif server_type == "input_audio_buffer.speech_stopped":
                at = data.data.get("audio_end_ms")
                self._record("speech.stopped", audio_end_ms=at)
                if self._on_vad:
                    self._on_vad("speech_stopped", at)
        elif kind == "usage":
            for name in ("requests", "input_tokens", "output_tokens", "total_tokens"):
                value = getattr(data.usage, name, None)
                if isinstance(value, int):
                    self.usage[name] = self.usage.get(name, 0) + value

    def agent_said(self, item_id: str) -> None:
        """Write the agent's transcript for ``item_id`` once its parts are all in."""
        parts = self._agent_parts.pop(item_id, None)
        if parts:
            text = "".join(parts)
            self._record("transcript.agent", item_id=item_id, text=text)
            self.conversation.append(("assistant", text))

    def responses_idle_since(self, started_before: int) -> bool:
        """A response began after ``started_before`` responses, and every response has ended."""
        return (
            self.responses_started > started_before
            and self.responses_ended >= self.responses_started
        )
