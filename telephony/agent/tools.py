"""Call control for the agent: tools to end the call and to transfer it, and what they act on.

Each call's ``RealtimeSession`` runs with a :class:`CallContext` as its context; the tools reach
the live call through it. Add them to your own agent with :func:`call_control_tools`::

    tools = [*my_tools, *call_control_tools(["sales"])]
    agent = RealtimeAgent(name="…", instructions="…", tools=tools)

The transfer destination is a *name* from the configured allow-list (``TRANSFER_TARGETS``); the
number or SIP URI behind it never comes from the model.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents import FunctionTool, RunContextWrapper, Tool, function_tool

__all__ = [
    "CallContext",
    "CallControl",
    "TransferDecision",
    "briefing_tools",
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

    async def transfer(self, destination: str, summary: str = "") -> str:
        """Hand the caller to an allowed destination name; returns a note for the model.
        ``summary``: the caller's request in a sentence or two, for a warm transfer's
        briefing."""
        ...


class TransferDecision(Protocol):
    """What a warm transfer's briefing leg can do: the person accepts or declines."""

    async def decide_transfer(self, accepted: bool, why: str) -> str:
        """The person's answer (``why``: ``voice`` or ``keypad``, a reason for a decline);
        returns a note for the model."""
        ...


# a pre-warmed session's tool waits at most this long for its call's stream: longer than a
# pre-warm is held by default (a dialled call's 60 s ring and MODEL_PREWARM_TIMEOUT's 15 s),
# so a session no stream adopts is closed, its tool with it, before the wait ends
CONTROL_WAIT_S = 90.0


@dataclass
class CallContext:
    """The context object of each call's session: ``RunContextWrapper.context`` in tools.

    A session pre-warmed at the webhook (``MODEL_PREWARM``) has no call control until the call's
    stream adopts it, and may already be saying its greeting: one made with ``pending=True``
    makes a tool that needs the call (``end_call``, ``transfer_call``) wait for
    :meth:`attach` (at most ``CONTROL_WAIT_S``), so a greeting that hangs up or transfers at
    once acts on the call instead of finding no call.
    """

    call_sid: str
    control: CallControl | None = None
    pending: bool = False  # the control comes later, by attach()
    _attached: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def attach(self, control: CallControl) -> None:
        """The call's control, now (a pre-warmed session adopted by its stream)."""
        self.control = control
        self._attached.set()

    async def call_control(self, wait_s: float = CONTROL_WAIT_S) -> CallControl | None:
        """The call's control; while it is pending, waits for it (None after ``wait_s``)."""
        if self.control is None and self.pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._attached.wait()
        return self.control


async def _control(ctx: RunContextWrapper[Any]) -> CallControl | None:
    context = ctx.context
    return await context.call_control() if isinstance(context, CallContext) else None


@function_tool
async def end_call(ctx: RunContextWrapper[Any], reason: str = "") -> str:
    """End the phone call. First say a short goodbye; the line closes once it has played.

    Args:
        reason: why the call ends, in a few words (for the call log).
    """
    control = await _control(ctx)
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
    async def transfer_call(
        ctx: RunContextWrapper[Any], destination: str, summary: str = ""
    ) -> str:
        """Transfer the caller.

        Args:
            destination: one of the allowed names.
            summary: what the caller wants, in one or two sentences, for the person who
                takes the call (they may be briefed before the caller is put through).
        """
        control = await _control(ctx)
        if control is None:
            return "This session is not a phone call; there is nothing to transfer."
        return await control.transfer(destination, summary)

    return without_filler(transfer_call)  # type: ignore[return-value]


async def _decision(ctx: RunContextWrapper[Any]) -> TransferDecision | None:
    control = await _control(ctx)
    return control if hasattr(control, "decide_transfer") else None  # type: ignore[return-value]


@function_tool
async def accept_transfer(ctx: RunContextWrapper[Any]) -> str:
    """The person said yes: they take the call. The caller is put through at once; say
    nothing more."""
    decision = await _decision(ctx)
    if decision is None:
        return "There is no transfer to accept on this call."
    return await decision.decide_transfer(True, "voice")


@function_tool
async def decline_transfer(ctx: RunContextWrapper[Any], reason: str = "") -> str:
    """The person said no, or cannot take the call now.

    Args:
        reason: why, in a few words, if they said (the caller is told).
    """
    decision = await _decision(ctx)
    if decision is None:
        return "There is no transfer to decline on this call."
    return await decision.decide_transfer(False, reason[:120] or "voice")


def briefing_tools() -> list[FunctionTool]:
    """The tools of a warm transfer's briefing agent: ``accept_transfer``,
    ``decline_transfer``."""
    return [without_filler(accept_transfer), without_filler(decline_transfer)]  # type: ignore[list-item]


without_filler(end_call)  # it ends the call: no hold sound before the goodbye


def call_control_tools(transfer_destinations: Iterable[str] = ()) -> list[FunctionTool]:
    """``end_call``, plus ``transfer_call`` when there are allowed destinations."""
    names = list(transfer_destinations)
    return [end_call, transfer_tool(names)] if names else [end_call]


def transfer_refusal(targets: Mapping[str, str], destination: str) -> str:
    """What the model is told when ``destination`` is not an allowed name: the names it may use."""
    allowed = ", ".join(sorted(targets)) or "none"
    return f"Cannot transfer to {destination!r}. Allowed destinations: {allowed}."
