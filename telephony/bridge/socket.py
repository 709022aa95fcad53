"""The media socket and the admission check, as the bridge sees them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..twilio.media_stream import Start

if TYPE_CHECKING:
    from .call import MediaStreamCall

__all__ = ["Admit", "TwilioSocket"]


class TwilioSocket(Protocol):
    """The media socket as the bridge sees it (the route adapts Starlette's WebSocket)."""

    async def receive(self) -> str | bytes | None:
        """Next frame: text, bytes (a binary frame), or None once the socket is closed."""
        ...

    async def send(self, text: str) -> None:
        """Send one text frame; raises if the socket is gone."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket if still open; never raises."""
        ...


Admit = Callable[[Start, "MediaStreamCall"], Awaitable[dict[str, Any]]]
"""Decides whether a stream may go on once its ``start`` arrived: returns fields for the
``stream.start`` record (such as ``degraded``), or raises :class:`telephony.admission.Refused`."""
