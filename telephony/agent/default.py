"""The default phone agent, and loading the user's own agent from ``module:attribute``.

Replace the agent without editing this package: set ``AGENT=mypackage.agents:phone_agent`` (a
``RealtimeAgent`` or a zero-argument function returning one), or build the app yourself with
``telephony.app.create_app(agent=my_agent)``.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents import function_tool
from agents.realtime import RealtimeAgent

from .tools import call_control_tools

__all__ = ["build_default_agent", "load_agent"]

INSTRUCTIONS = """\
You are a friendly, concise phone concierge answering a telephone call.
Speak in short sentences: this is a phone line, not a chat window. Ask one question at a time.
If you cannot help, say so plainly. Never read out long lists, URLs or code.
You can tell the caller the current time in any time zone, and what this line can do."""


CALL_CONTROL_INSTRUCTIONS = """
When the caller is done, say goodbye and call end_call. If the caller presses keys, you will get
a message saying which; act on it as their answer."""


@function_tool
def current_time(timezone: str = "UTC") -> str:
    """Return the current local time in an IANA time zone such as 'Europe/Paris'.

    Args:
        timezone: IANA time zone name; defaults to UTC.
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"Unknown time zone {timezone!r}."
    return dt.datetime.now(zone).strftime("%A %H:%M (%Z)")


@function_tool
def line_capabilities() -> str:
    """Describe what this phone line can do for the caller."""
    return (
        "This is a demonstration line for a realtime voice agent. It can chat, tell the time "
        "anywhere in the world, and explain how it works."
    )


def build_default_agent(transfer_destinations: Iterable[str] = ()) -> RealtimeAgent:
    """The default concierge: a short prompt, two harmless tools, ``end_call``, and
    ``transfer_call`` when transfer destinations are configured."""
    names = list(transfer_destinations)
    instructions = INSTRUCTIONS + CALL_CONTROL_INSTRUCTIONS
    if names:
        instructions += f" You can transfer the caller to: {', '.join(names)}."
    return RealtimeAgent(
        name="Phone concierge",
        instructions=instructions,
        tools=[current_time, line_capabilities, *call_control_tools(names)],
    )


def load_agent(spec: str) -> RealtimeAgent:
    """Load ``module:attribute``: a ``RealtimeAgent``, or a zero-argument callable returning one.

    Raises:
        ValueError: malformed spec, missing module or attribute, or not a ``RealtimeAgent``.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"AGENT must be 'module:attribute', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"AGENT: cannot import {module_name!r}: {exc}") from exc
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"AGENT: {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(obj, RealtimeAgent) and callable(obj):
        obj = obj()
    if not isinstance(obj, RealtimeAgent):
        raise ValueError(f"AGENT: {spec!r} is not a RealtimeAgent (got {type(obj).__name__})")
    return obj
