"""GPT-Live's ``session.start`` for a phone leg, derived from the call's ``RealtimeAgent``.

GPT-Live splits an agent in two (``../shared/reference/gpt_live.md`` §1.2, §1.5): a short
*frontend* prompt for the voice model (who it is, and its backchannel, interruption and
delegation policies), fixed for the session, and a *backend*: a Responses model that the voice
model delegates tool work to, with the agent's own instructions and function tools
(``delegation.responses``). The voice model has no tools itself.

What carries over from a ``RealtimeAgent``: its instructions (to the delegate, and the first
lines of them into the frontend prompt), its function tools (JSON schema and description), its
handoffs (each a delegate tool, ``transfer_to_<agent>`` as the SDK names them; taking one is a
``session.update`` of the delegation's instructions and tools: :func:`delegation_update`), the
greeting (a commentary instruction after ``session.started``, see :mod:`.session`). What does
not: the voice model's prompt after start (GPT-Live fixes it: the persona stays the first
agent's, and a handoff's agent keeps its voice), hosted tools, guardrails, and per-turn model
settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents import FunctionTool, Handoff, RunContextWrapper
from agents.realtime import RealtimeAgent
from agents.realtime.handoffs import collect_enabled_handoffs

__all__ = [
    "PHONE_FORMAT",
    "LiveOptions",
    "LivePlan",
    "delegation_update",
    "frontend_prompt",
    "plan_session",
]

PHONE_FORMAT = {"type": "audio/pcmu", "rate": 8000}  # Twilio's μ-law, both directions
PERSONA_CHARS = 600  # the agent's instructions quoted into the frontend prompt, at most
FRONTEND = """{persona}

You are speaking with a caller on a telephone line. Keep every reply to one or two short
sentences.

Backchannel policy: Use short, sparing backchannels ("mm-hm", "right") only while the caller
tells something at length; never over a question.
Interruption policy: Stop speaking when the caller interrupts with words. Keep going over a
cough, a noise, a backchannel, or your own voice coming back on the line.
Delegation policy: Delegate anything that needs a tool, a fact about the business, ending the
call or transferring it. Say only what the delegate's result tells you; never invent it."""
HISTORY_MESSAGES = 128  # GPT-Live's limit on startup ``input`` messages
HISTORY_CHARS = 24_000  # about 6,000 tokens, under the 8,192 rendered-token default


@dataclass(frozen=True)
class LiveOptions:
    """The backend's settings: ``OPENAI_LIVE_MODEL``, ``VOICE``,
    ``OPENAI_LIVE_DELEGATE_MODEL``, ``LIVE_INSTRUCTIONS`` (None: derived),
    ``LIVE_ECHO_GATE``."""

    model: str = "gpt-live-1.1"
    voice: str = "marin"
    delegate_model: str = "gpt-5.4-mini"
    instructions: str | None = None
    echo_gate: bool = True


@dataclass(frozen=True)
class LivePlan:
    """One call's session: ``config`` is ``session.start``'s ``session``; ``tools`` the
    function tools the delegate may call, by name; ``handoffs`` the agent's handoffs, by
    their tool name; ``agent`` the agent it was planned for."""

    config: dict[str, Any]
    tools: dict[str, FunctionTool]
    handoffs: dict[str, Handoff[Any, Any]]
    agent: RealtimeAgent[Any]


def frontend_prompt(name: str, instructions: str) -> str:
    """The voice model's prompt: the agent's name and the start of its instructions as the
    persona, then the three policies GPT-Live's prompting guide names."""
    persona = " ".join(instructions.split())[:PERSONA_CHARS]
    return FRONTEND.format(persona=f"You are {name}. {persona}".strip())


async def plan_session(
    agent: RealtimeAgent[Any],
    context: Any,
    options: LiveOptions,
    history: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> LivePlan:
    """``session.start``'s config for ``agent`` (its instructions and tools resolved with
    ``context``, the call's :class:`~telephony.agent.tools.CallContext`).

    Args:
        history: ``(role, text)`` turns the session starts with (``user`` or ``assistant``),
            oldest first: a session that replaces another seeds them as ``input``; the newest
            that fit GPT-Live's limits are kept.
    """
    wrapper = RunContextWrapper(context)
    instructions = await agent.get_system_prompt(wrapper) or ""
    tools = {
        tool.name: tool
        for tool in await agent.get_all_tools(wrapper)
        if isinstance(tool, FunctionTool)
    }
    handoffs = {h.tool_name: h for h in await collect_enabled_handoffs(agent, wrapper)}
    described = [
        (t.name, t.description, t.params_json_schema, t.strict_json_schema) for t in tools.values()
    ]
    described += [
        (h.tool_name, h.tool_description, h.input_json_schema, h.strict_json_schema)
        for h in handoffs.values()
    ]
    delegate: dict[str, Any] = {
        "model": options.delegate_model,
        "instructions": instructions,
        "tools": [
            {
                "type": "function",
                "name": name,
                "description": description,
                "parameters": parameters,
                "strict": strict,
            }
            for name, description, parameters, strict in described
        ],
        "parallel_tool_calls": True,
    }
    config: dict[str, Any] = {
        "model": options.model,
        "instructions": options.instructions or frontend_prompt(agent.name, instructions),
        "audio": {"format": dict(PHONE_FORMAT), "output": {"voice": options.voice}},
        "delegation": {"type": "responses", "responses": delegate},
        "store": False,
    }
    seeded = _history_input(history)
    if seeded:
        config["input"] = seeded
    return LivePlan(config, tools, handoffs, agent)


def delegation_update(plan: LivePlan) -> dict[str, Any]:
    """``session.update``'s ``delegation`` that gives a running session ``plan``'s delegate:
    its instructions and tools (a handoff; the voice model's prompt cannot change)."""
    responses = plan.config["delegation"]["responses"]
    keep = ("instructions", "tools")
    return {"type": "responses", "responses": {k: responses[k] for k in keep}}


def _history_input(history: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The newest turns within :data:`HISTORY_MESSAGES` and :data:`HISTORY_CHARS`, as
    ``input`` messages (the caller's as ``user``, the agent's as ``assistant``)."""
    kept: list[dict[str, Any]] = []
    chars = 0
    for role, text in reversed(list(history)):
        text = text.strip()
        if not text or role not in ("user", "assistant"):
            continue
        chars += len(text)
        if chars > HISTORY_CHARS or len(kept) >= HISTORY_MESSAGES:
            break
        part = "input_text" if role == "user" else "output_text"
        kept.append({"type": "message", "role": role, "content": [{"type": part, "text": text}]})
    return kept[::-1]
