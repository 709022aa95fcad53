"""What the offline model answers: deterministic, from the caller's words and the agent's tools.

- the greeting: the text of our greeting ``response.create`` ("… by saying: <text>");
- "goodbye"/"bye": the agent's ``end_call`` tool, then "Thank you for calling. Goodbye!";
- "human", "agent", "person", "representative": ``transfer_call`` to the first allowed
  destination (parsed from the tool's description);
- keypad digits (our DTMF message) read back; anything else: "You said: …".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GREETING", "Say", "UseTool", "after_tool", "greeting_text", "reply_to"]

GREETING = "Hello! This is the offline demo line. Say something and I will repeat it back."
GOODBYE_WORDS = frozenset({"goodbye", "bye"})
TRANSFER_WORDS = frozenset({"human", "agent", "person", "representative"})
DTMF_PREFIX = "The caller pressed these keys"


@dataclass(frozen=True)
class Say:
    """Speak ``text``."""

    text: str


@dataclass(frozen=True)
class UseTool:
    """Call the agent's tool ``name`` with ``arguments``."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


def greeting_text(instructions: str) -> str:
    """The words of a greeting ``response.create``'s instructions, or the offline greeting."""
    said = instructions.split("by saying:", 1)
    return said[1].strip() if len(said) == 2 else GREETING


def reply_to(text: str, tools: Mapping[str, Any]) -> Say | UseTool:
    """The answer to what the caller said (or to our keypad message)."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    if words & GOODBYE_WORDS and "end_call" in tools:
        return UseTool("end_call", {"reason": "the caller said goodbye"})
    if words & TRANSFER_WORDS and "transfer_call" in tools:
        destination = transfer_destinations(tools["transfer_call"])[:1]
        return UseTool("transfer_call", {"destination": destination[0] if destination else ""})
    if text.startswith(DTMF_PREFIX):
        return Say("You pressed " + text.split(":", 1)[-1].strip() + ".")
    if text:
        return Say(f"You said: {text.rstrip('.')}.")
    return Say("Sorry, I did not catch that.")


def after_tool(name: str) -> str:
    """What to say once a tool has run."""
    return {
        "end_call": "Thank you for calling. Goodbye!",
        "transfer_call": "Please hold while I transfer you.",
    }.get(name, "Done.")


def transfer_destinations(tool: Any) -> list[str]:
    """The destination names listed in a ``transfer_call`` tool's description ("one of: …")."""
    description = getattr(tool, "description", "") or ""
    if "one of:" not in description:
        return []
    names = description.split("one of:", 1)[-1].rstrip(". ")
    return [n.strip() for n in names.split(",") if n.strip()]
