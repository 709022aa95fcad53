"""The call, as the model-session supervisor (:mod:`.supervisor`) drives it."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from agents.realtime import RealtimeSession

__all__ = ["SessionHost"]


class SessionHost(Protocol):
    """The call, as the supervisor drives it."""

    broken: asyncio.Event
    """Set when a send to the session failed (the session is gone)."""

    async def attach(self, session: RealtimeSession) -> None:
        """Send caller audio (held audio first) to ``session`` from now on; raises if a send
        fails."""
        ...

    def detach(self) -> bool:
        """Hold caller audio from now on (a session is being replaced); the next session
        hears the last moments the old one heard again, then the held audio. False if it was
        already held."""
        ...

    async def on_model_event(self, event: Any) -> None:
        """One session event (audio to the caller, the call log); raises when the call is over."""
        ...

    def under_way(self) -> list[str]:
        """What the caller would notice if the session were replaced now, by name; empty: a
        session may be replaced now."""
        ...

    async def say_sorry(self) -> str:
        """Play the recorded apology to the caller; returns how, for ``call.apology``."""
        ...
