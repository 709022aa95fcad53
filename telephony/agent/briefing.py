"""A warm transfer's briefing: what the person who may take the call is told, and the agent
that tells them.

The caller's agent asks for the transfer with a summary of the caller's request
(``transfer_call(destination, summary)``). The service dials the person; their leg's session
runs :func:`briefing_agent`: the same agent (voice, model) with instructions of its own and two
tools, ``accept_transfer`` and ``decline_transfer``, which the person's answer triggers (keys
1 and 2 do the same without the model). Its first words are :func:`briefing_opening`.

A :class:`Briefing` travels as JSON through the fleet state under a random key named in the
person's leg URLs, so that any instance can take that leg.
"""

from __future__ import annotations

from collections.abc import Iterable

from agents.realtime import RealtimeAgent
from pydantic import BaseModel, ConfigDict, Field

from .tools import briefing_tools

__all__ = [
    "MAX_SUMMARY_CHARS",
    "Briefing",
    "agent_for_leg",
    "briefing_agent",
    "briefing_opening",
    "briefing_summary",
]

MAX_SUMMARY_CHARS = 400  # about 25 s of speech at most
NO_SUMMARY = "did not say what it is about"
INSTRUCTIONS = """You are an assistant on a phone call with a member of staff, {destination}.
A caller is on hold, waiting to be put through to them. You have just told them:
"{opening}"
Your only task is to find out whether they will take the call now.
- They say yes (or anything that means they will take it): call accept_transfer at once and say
  nothing more.
- They say no, or that they are busy or cannot: call decline_transfer with their reason in a
  few words, then say one short sentence that you will let the caller know.
- They ask about the caller: answer only from this summary: {summary}. Then ask again.
Keep every reply to one short sentence."""


class Briefing(BaseModel):
    """One warm transfer, as the person's leg needs it (JSON in the fleet state).

    Attributes:
        key: random, unguessable; names the transfer in the person's leg URLs.
        caller_sid: the CallSid of the caller's leg (whose owner acts on the decision).
        destination: the destination name of ``TRANSFER_TARGETS``.
        summary: what the caller wants (at most :data:`MAX_SUMMARY_CHARS`).
        caller: the caller's number as the briefing says it ('' when unknown).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    caller_sid: str = Field(max_length=64)
    destination: str = Field(max_length=80)
    summary: str = Field(max_length=MAX_SUMMARY_CHARS)
    caller: str = Field(default="", max_length=64)


def briefing_summary(summary: str, caller_turns: Iterable[str] = ()) -> str:
    """The caller's request for a briefing: the agent's ``summary``, or (when it gave none) the
    caller's last words; at most :data:`MAX_SUMMARY_CHARS`, cut at a word, one line."""
    text = " ".join(summary.split())
    if not text:
        words = " ".join(" ".join(t.split()) for t in caller_turns if t.strip())
        text = f'said: "{words[-(MAX_SUMMARY_CHARS - 10) :]}"' if words else NO_SUMMARY
    if len(text) > MAX_SUMMARY_CHARS:
        text = text[: MAX_SUMMARY_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return text


def briefing_opening(briefing: Briefing) -> str:
    """The briefing's first words to the person: who calls, what about, and how to answer."""
    who = f"a caller from {briefing.caller}" if briefing.caller else "a caller"
    return (
        f"Hello, this is the virtual assistant. I have {who} on hold for {briefing.destination}. "
        f"In short: {briefing.summary.rstrip('.')}. Will you take the call? Say yes or no, or "
        "press 1 to accept, 2 to decline."
    )


def briefing_agent(agent: RealtimeAgent, briefing: Briefing) -> RealtimeAgent:
    """``agent`` as the person's leg runs it: its voice and model, the briefing's instructions,
    only the two decision tools, no handoffs."""
    instructions = INSTRUCTIONS.format(
        destination=briefing.destination,
        opening=briefing_opening(briefing),
        summary=briefing.summary,
    )
    return agent.clone(
        name=f"{agent.name} (briefing)",
        instructions=instructions,
        tools=list(briefing_tools()),
        handoffs=[],
    )


def agent_for_leg(agent: RealtimeAgent, control: object) -> RealtimeAgent:
    """The agent a call runs: :func:`briefing_agent` on a warm transfer's person leg (its
    call control holds a :class:`Briefing` as ``briefing``), else ``agent`` itself. Both
    backends ask this (Realtime sessions, GPT-Live plans)."""
    briefing = getattr(control, "briefing", None)
    return briefing_agent(agent, briefing) if isinstance(briefing, Briefing) else agent
