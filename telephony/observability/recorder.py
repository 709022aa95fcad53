"""Recording a realtime session's events into a call log, the same on every call path.

Media Streams and SIP calls both feed their session's events to a :class:`SessionRecorder`,
which writes transcripts, responses, tool calls, handoffs, VAD events and model errors, and keeps
the conversation so far (a bounded :class:`Conversation`, replayed into a new session) and what
is going on now (responses and tools in flight, whether the caller is speaking: when a session
may be replaced unnoticed, when ``end_call``'s goodbye is over, and, where the session reports
its output audio buffer (SIP), when the caller stopped hearing the agent). Audio events are the
caller's concern.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .cost import TOKEN_KINDS, Prices, add_tokens, tokens_of, transcription_tokens_of

__all__ = ["Conversation", "SessionRecorder", "Turn"]

KEPT_CHARS = 200_000  # about 50k tokens: more than any replay takes; memory stays flat
SETTLE_S = 3.0  # a caller's turn settles (reply begun, transcript in) within this, or never


@dataclass(frozen=True)
class Turn:
    """One entry of the conversation: what the caller or the agent said, or a tool call.

    ``role`` is ``user``, ``assistant`` or ``tool``; a tool call has ``name``, ``arguments``
    (JSON text) and ``output``.
    """

    role: str
    text: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""

    @property
    def chars(self) -> int:
        return len(self.text) + len(self.name) + len(self.arguments) + len(self.output)


class Conversation:
    """The conversation so far, newest last, holding at most ``kept_chars`` of text (older
    turns drop off; :attr:`dropped` counts them)."""

    def __init__(self, kept_chars: int = KEPT_CHARS) -> None:
        self._turns: deque[Turn] = deque()
        self._chars = 0
        self._kept_chars = kept_chars
        self.dropped = 0

    def add(self, turn: Turn) -> None:
        self._turns.append(turn)
        self._chars += turn.chars
        while self._chars > self._kept_chars and len(self._turns) > 1:
            self._chars -= self._turns.popleft().chars
            self.dropped += 1

    def newest(self, max_chars: int) -> tuple[list[Turn], int]:
        """The newest turns, whole, that fit in ``max_chars``, oldest first; and how many
        older turns (kept here or dropped already) are left out."""
        chosen: list[Turn] = []
        used = 0
        for turn in reversed(self._turns):
            if used + turn.chars > max_chars and chosen:
                break
            chosen.append(turn)
            used += turn.chars
        chosen.reverse()
        return chosen, self.dropped + len(self._turns) - len(chosen)

    @property
    def total(self) -> int:
        """Turns ever added (kept or dropped)."""
        return self.dropped + len(self._turns)

    def since(self, total: int) -> list[Turn]:
        """The turns added after the first ``total`` (those still kept), oldest first."""
        count = min(len(self._turns), max(0, self.total - total))
        return list(self._turns)[len(self._turns) - count :] if count else []

    def __len__(self) -> int:
        return len(self._turns)

    def __iter__(self) -> Any:
        return iter(self._turns)


class SessionRecorder:
    """Turns session events into call-log records through ``record(event, **fields)``."""

    def __init__(
        self,
        record: Callable[..., Any],
        on_vad: Callable[[str, int | None], None] | None = None,
        prices: Prices | None = None,
    ) -> None:
        self._record = record
        self._on_vad = on_vad  # ("speech_started" | "speech_stopped", audio ms)
        self.usage: dict[str, int] = {}  # token counts the model reported
        self.tokens: dict[str, int] = dict.fromkeys(TOKEN_KINDS, 0)  # by kind (cost.py)
        self.prices = prices or Prices()
        self.conversation = Conversation()
        self.responses_started = 0
        self.responses_ended = 0
        self.tools_running = 0
        self.caller_speaking = False  # between the model VAD's speech_started and _stopped
        self.model_errors = 0
        # the output audio buffer (SIP and WebRTC sessions report it; Media Streams do not)
        self.playout_reported = False  # an output_audio_buffer.started was seen
        self.playing = False  # started, not yet stopped or cleared
        self.last_response_id: str | None = None
        self.played_out: deque[str] = deque(maxlen=8)  # response_ids of stopped, newest last
        self.last_activity = time.monotonic()  # anything said, or done, by either side
        # the caller's last turn ended (speech_stopped) and is settling: its reply has not begun
        # or its transcript is not in yet
        self._settling_since: float | None = None
        self._reply_begun = self._transcribed = False
        self._agent_parts: dict[str, list[str]] = {}

    def on_event(self, event: Any) -> None:
        """One ``RealtimeSession`` event (audio events are ignored here)."""
        kind = event.type
        if kind in ("tool_start", "tool_end"):
            self.last_activity = time.monotonic()
        if kind == "tool_start":
            self.tools_running += 1
            self._record("tool.start", tool=event.tool.name, arguments=event.arguments)
        elif kind == "tool_end":
            self.tools_running = max(0, self.tools_running - 1)
            output = str(event.output)[:500]
            self._record("tool.end", tool=event.tool.name, output=output)
            turn = Turn("tool", name=event.tool.name, arguments=event.arguments, output=output)
            self.conversation.add(turn)
        elif kind == "handoff":
            self._record("handoff", from_agent=event.from_agent.name, to_agent=event.to_agent.name)
        elif kind == "error":
            error = event.error
            code = error.get("code") if isinstance(error, dict) else getattr(error, "code", None)
            if code == "session_expired":  # the session's cap: a renewal follows, not a failure
                self._record("model.session_expired")
            else:
                self.model_errors += 1
                self._record("model.error", where="event", error=str(error)[:500])
        elif kind == "audio_end":
            self.agent_said(event.item_id)
        elif kind == "raw_model_event":
            self._on_model_event(event.data)

    def _on_model_event(self, data: Any) -> None:
        kind = data.type
        if kind not in ("raw_server_event", "usage"):
            self.last_activity = time.monotonic()
        if kind == "input_audio_transcription_completed":
            self._transcribed = True
            self._record("transcript.caller", item_id=data.item_id, text=data.transcript)
            if data.transcript:
                self.conversation.add(Turn("user", data.transcript))
        elif kind == "transcript_delta":
            self._agent_parts.setdefault(data.item_id, []).append(data.delta)
        elif kind == "turn_started":
            self._reply_begun = True
            self.responses_started += 1
            self.last_response_id = data.response_id
            self._record("response.started", response_id=data.response_id)
        elif kind == "turn_ended":
            self.responses_ended += 1
            self._record("response.done", response_id=data.response_id)
            for item_id in list(self._agent_parts):
                self.agent_said(item_id)
        elif kind == "raw_server_event":
            server_type = data.data.get("type") if isinstance(data.data, dict) else None
            if server_type == "input_audio_buffer.speech_started":
                self.last_activity = time.monotonic()
                self.caller_speaking = True
                at = data.data.get("audio_start_ms")
                self._record("speech.started", audio_start_ms=at)
                if self._on_vad:
                    self._on_vad("speech_started", at)
            elif server_type == "input_audio_buffer.speech_stopped":
                self.last_activity = self._settling_since = time.monotonic()
                self._reply_begun = self._transcribed = False
                self.caller_speaking = False
                at = data.data.get("audio_end_ms")
                self._record("speech.stopped", audio_end_ms=at)
                if self._on_vad:
                    self._on_vad("speech_stopped", at)
            elif server_type == "response.done":
                self._on_response_done(data.data.get("response"))
            elif server_type == "conversation.item.input_audio_transcription.completed":
                self._on_transcription_usage(data.data)
            elif server_type == "conversation.item.input_audio_transcription.failed":
                self._transcribed = True
            elif server_type is not None and server_type.startswith("output_audio_buffer."):
                self._on_playout(server_type, data.data.get("response_id"))
        elif kind == "usage":
            for name in ("requests", "input_tokens", "output_tokens", "total_tokens"):
                value = getattr(data.usage, name, None)
                if isinstance(value, int):
                    self.usage[name] = self.usage.get(name, 0) + value

    def _on_response_done(self, response: Any) -> None:
        """OpenAI's ``response.done``: its ``usage``, by kind and priced, as ``model.usage``."""
        usage = response.get("usage") if isinstance(response, dict) else None
        if not isinstance(usage, dict):
            return
        tokens = tokens_of(usage)
        add_tokens(self.tokens, tokens)
        self._record(
            "model.usage",
            response_id=response.get("id"),
            tokens=tokens,
            cost_usd=round(self.prices.model_usd(tokens), 6),
        )

    def _on_transcription_usage(self, event: dict[str, Any]) -> None:
        """A caller transcript's ``usage`` (billed apart from the responses), priced, as
        ``transcription.usage``."""
        tokens = transcription_tokens_of(event.get("usage"))
        if not tokens:
            return
        add_tokens(self.tokens, tokens)
        self._record(
            "transcription.usage",
            item_id=event.get("item_id"),
            tokens=tokens,
            cost_usd=round(self.prices.model_usd(tokens), 6),
        )

    def _on_playout(self, server_type: str, response_id: Any) -> None:
        """``output_audio_buffer.started`` / ``.stopped`` / ``.cleared`` (OpenAI, SIP and
        WebRTC sessions): the caller is hearing the agent, or the buffer ran empty, or a
        barge-in emptied it."""
        self.last_activity = time.monotonic()
        if server_type == "output_audio_buffer.started":
            self.playout_reported = True
            self.playing = True
        elif server_type in ("output_audio_buffer.stopped", "output_audio_buffer.cleared"):
            self.playing = False
            if isinstance(response_id, str):
                self.played_out.append(response_id)

    def agent_said(self, item_id: str) -> None:
        """Write the agent's transcript for ``item_id`` once its parts are all in."""
        parts = self._agent_parts.pop(item_id, None)
        if parts:
            text = "".join(parts)
            self._record("transcript.agent", item_id=item_id, text=text)
            self.conversation.add(Turn("assistant", text))

    def agent_words(self) -> str:
        """What the agent is saying now and said last (transcripts), for the echo check."""
        said = [t.text for t in self.conversation if t.role == "assistant"][-1:]
        return " ".join(said + ["".join(parts) for parts in self._agent_parts.values()])

    @property
    def busy(self) -> bool:
        """A response or a tool is under way, the caller is speaking or their turn is still
        settling (its reply not begun or its transcript not in, for up to ``SETTLE_S``), or
        the agent's audio is still playing (where the session reports it)."""
        return bool(self.under_way())

    def under_way(self) -> list[str]:
        """What makes the session :attr:`busy`, by name (``response``, ``tool``,
        ``caller_speaking``, ``settling``, ``playing``); empty when it is not."""
        states = {
            "response": self.responses_ended < self.responses_started,
            "tool": self.tools_running > 0,
            "caller_speaking": self.caller_speaking,
            "settling": self.settling,
            "playing": self.playing,
        }
        return [name for name, on in states.items() if on]

    @property
    def settling(self) -> bool:
        """The caller's last turn ended less than ``SETTLE_S`` ago and its reply has not begun
        or its transcript is not in (the model answers every turn: server VAD)."""
        if self._settling_since is None or (self._reply_begun and self._transcribed):
            return False
        return time.monotonic() - self._settling_since < SETTLE_S

    def session_replaced(self) -> None:
        """A new session starts: what the old one had under way will not finish."""
        self.responses_ended = self.responses_started
        self.tools_running = 0
        self.caller_speaking = False
        self.playing = False
        self._settling_since = None
        for item_id in list(self._agent_parts):  # what was said of it was said
            self.agent_said(item_id)

    def responses_idle_since(self, started_before: int) -> bool:
        """A response began after ``started_before`` responses, and every response has ended."""
        return (
            self.responses_started > started_before
            and self.responses_ended >= self.responses_started
        )
