"""The conversation so far, replayed into a new model session (after a failure, or for a
renewal) as Realtime ``conversation.item.create`` items.

What goes: the newest turns, whole, up to ``history_tokens`` (about ``CHARS_PER_TOKEN``
characters a token): what the caller and the agent said, and each tool call with its output.
Older turns are left out; for a renewal a note first tells the model the call goes on and not
to greet again, and how many turns it does not see. A session primed while the old one still
ran gets only what was said since, when it takes the call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from agents.realtime import RealtimeSession
from agents.realtime.model_inputs import RealtimeModelSendRawMessage

from ..observability.recorder import SessionRecorder, Turn

__all__ = ["CHARS_PER_TOKEN", "HISTORY_BATCH", "RENEWAL_NOTE", "ConversationReplay"]

CHARS_PER_TOKEN = 4
HISTORY_BATCH = 25  # replayed items sent between two turns of the event loop
RENEWAL_NOTE = (
    "This phone call is continuing in a new session; the conversation so far follows. Do not "
    "greet the caller again or say that anything changed: carry on exactly where it was."
)


@dataclass(frozen=True)
class _Primed:
    """What was replayed into a session before it took the call."""

    total: int  # the conversation's turns (ever) when it was replayed
    turns: int
    left_out: int
    items: int
    chars: int


class ConversationReplay:
    """Replays one call's conversation into its new sessions.

    Args:
        recorder: the call's session recorder (its conversation).
        history_tokens: the replay's budget (``MODEL_HISTORY_TOKENS``).
    """

    def __init__(self, recorder: SessionRecorder, history_tokens: int) -> None:
        self._recorder = recorder
        self._budget_chars = history_tokens * CHARS_PER_TOKEN
        self._primed: dict[RealtimeSession, _Primed] = {}  # replayed into, not yet in use
        self._item_ids = 0

    async def prime(self, session: RealtimeSession) -> None:
        """Replay the conversation so far into a session opened for a renewal, before it takes
        the call (:meth:`replay` then sends only what was said since)."""
        total = self._recorder.conversation.total
        turns, left_out, items = await self._send(session, renewal=True)
        chars = sum(t.chars for t in turns)
        self._primed[session] = _Primed(total, len(turns), left_out, items, chars)

    async def replay(self, session: RealtimeSession, renewal: bool) -> dict[str, int]:
        """Give ``session`` the conversation so far (what it was not primed with); returns
        ``turns_replayed``, ``turns_at_switch`` (sent now), ``turns_left_out``, ``items``
        and ``chars``, for the call log."""
        primed = self._primed.pop(session, None)
        if primed is None:
            turns, left_out, items = await self._send(session, renewal=renewal)
            primed = _Primed(0, 0, left_out, 0, 0)
        else:
            later = self._recorder.conversation.since(primed.total)
            turns, _, items = await self._send(session, renewal=False, turns=later)
        return {
            "turns_replayed": primed.turns + len(turns),
            "turns_at_switch": len(turns),
            "turns_left_out": primed.left_out,
            "items": items + primed.items,
            "chars": primed.chars + sum(t.chars for t in turns),
        }

    def forget(self, session: RealtimeSession) -> None:
        """``session`` is closing: whatever it was primed with goes."""
        self._primed.pop(session, None)

    async def _send(
        self, session: RealtimeSession, renewal: bool, turns: list[Turn] | None = None
    ) -> tuple[list[Turn], int, int]:
        """Send ``turns`` (default: the newest within the budget, after the renewal note when
        ``renewal``) as conversation items; returns the turns, how many older ones were left
        out, and the items sent."""
        left_out = 0
        items: list[dict[str, Any]] = []
        if turns is None:
            turns, left_out = self._recorder.conversation.newest(self._budget_chars)
            if renewal:
                note = RENEWAL_NOTE
                if left_out:
                    note += f" {left_out} earlier turns of this call are not repeated here."
                items.append(_message("system", note))
        for turn in turns:
            self._item_ids += 1
            items += _items(turn, f"call_replay_{self._item_ids}")
        for n, item in enumerate(items, 1):
            if n % HISTORY_BATCH == 0:
                await asyncio.sleep(0)  # other calls' audio moves between batches
            await session.model.send_event(
                RealtimeModelSendRawMessage(
                    message={"type": "conversation.item.create", "other_data": {"item": item}}
                )
            )
        return turns, left_out, len(items)


def _message(role: str, text: str) -> dict[str, Any]:
    content_type = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": content_type, "text": text}]}


def _items(turn: Turn, call_id: str) -> list[dict[str, Any]]:
    """A turn as Realtime conversation items (a tool call is two: the call and its output)."""
    if turn.role != "tool":
        return [_message(turn.role, turn.text)]
    call = {"type": "function_call", "call_id": call_id, "name": turn.name}
    return [
        {**call, "arguments": turn.arguments},
        {"type": "function_call_output", "call_id": call_id, "output": turn.output},
    ]
