"""Call control for the agent: tools to end the call and to transfer it, and what they act on.

Each call's ``RealtimeSession`` runs with a :class:`CallContext` as its context; the tools reach
the live call through it. Add them to your own agent with :func:`call_control_tools`::

    tools = [*my_tools, *call_control_tools(["sales"])]
    agent = RealtimeAgent(name="…", instructions="…", tools=tools)

The transfer destination is a *name* from the configured allow-list (``TRANSFER_TARGETS``); the
number or SIP URI behind it never comes from the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agents import FunctionTool, RunContextWrapper, Tool, function_tool

__all__ = [
    "CallContext",
    "CallControl",
    "call_control_tools",
    "end_call",
    "transfer_refusal",
    "transfer_tool",
    "wants_filler",
    "without_filler",
]

_NO_FILLER = "_telephony_no_filler"


def without_filler(tool: Tool) -> Tool:
    """Mark ``tool`` as needing no hold sound while it runs (it answers at once, or it ends
    the call); returns the same tool, so it can wrap a definition:
    ``lookup = without_filler(function_tool(lookup))``."""
    setattr(tool, _NO_FILLER, True)
    return tool


def wants_filler(tool: Any) -> bool:
    """Whether the caller should hear the hold sound while ``tool`` runs (see
    :mod:`telephony.bridge.hold`)."""
    return not getattr(tool, _NO_FILLER, False)


class CallControl(Protocol):
    """What the tools can do to the live call (the Media Streams bridge and the SIP call
    implement it)."""

    async def hang_up(self, reason: str) -> str:
        """End the call once the agent's goodbye has played; returns a note for the model."""
        ...

    async def transfer(self, destination: str) -> str:
        """Hand the caller to an allowed destination name; returns a note for the model."""
        ...


@dataclass
class CallContext:
    """The context object of each call's session: ``RunContextWrapper.context`` in tools."""

    call_sid: str
    control: CallControl | None = None


def _control(ctx: RunContextWrapper[Any]) -> CallControl | None:
    context = ctx.context
    return context.control if isinstance(context, CallContext) else None


@function_tool
async def end_call(ctx: RunContextWrapper[Any], reason: str = "") -> str:
    """End the phone call. First say a short goodbye; the line closes once it has played.

    Args:
        reason: why the call ends, in a few words (for the call log).
    """
    control = _control(ctx)
    if control is None:
        return "This session is not a phone call; there is nothing to hang up."
    return await control.hang_up(reason)


def transfer_tool(destinations: Iterable[str]) -> FunctionTool:
    """A ``transfer_call`` tool whose schema lists the allowed destination names."""
    names = sorted(destinations)

    @function_tool(
        name_override="transfer_call",
        description_override=(
            "Transfer the caller to a person. Tell the caller first that you are transferring "
            f"them. destination must be one of: {', '.join(names)}."
        ),
    )
    async def transfer_call(ctx: RunContextWrapper[Any], destination: str) -> str:
        control = _control(ctx)
        if control is None:
            return "This session is not a phone call; there is nothing to transfer."
        return await control.transfer(destination)

    return without_filler(transfer_call)  # type: ignore[return-value]


without_filler(end_call)  # it ends the call: no hold sound before the goodbye


def call_control_tools(transfer_destinations: Iterable[str] = ()) -> list[FunctionTool]:
    """``end_call``, plus ``transfer_call`` when there are allowed destinations."""
    names = list(transfer_destinations)
    return [end_call, transfer_tool(names)] if names else [end_call]


def transfer_refusal(targets: Mapping[str, str], destination: str) -> str:
    """What the model is told when ``destination`` is not an allowed name: the names it may use."""
    allowed = ", ".join(sorted(targets)) or "none"
    return f"Cannot transfer to {destination!r}. Allowed destinations: {allowed}."
