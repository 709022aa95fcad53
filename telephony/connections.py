"""Connection guard for uvicorn: header and body timeouts, and a cap on open connections.

uvicorn closes idle keep-alive connections, but a client that connects and sends nothing, or
sends its headers or body a byte at a time, is kept forever; a few hundred such sockets use up
the process's file descriptors and nothing else gets in, ``/healthz`` included.
:class:`GuardedHttpToolsProtocol` (uvicorn's httptools protocol plus three rules) fixes that:

- a request's headers must arrive within ``header_timeout`` of the connection (or of the
  request's first byte on a kept-alive connection), its body within ``body_timeout`` of the
  headers; otherwise the connection is closed;
- at most ``max_connections`` are open; a new one beyond that evicts the oldest connection whose
  request is still incomplete (headers or body), or is closed at once if every open one has a
  complete request in hand.

WebSocket upgrades leave the guard once their handshake headers are in (the media socket has
its own ``start`` timeout). Configure it with :func:`guard` on a ``uvicorn.Config``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .observability.ratelimit import LogLimiter

__all__ = ["GuardLimits", "GuardedHttpToolsProtocol", "guard", "open_connections"]

logger = logging.getLogger("telephony.connections")


@dataclass(frozen=True)
class GuardLimits:
    """Seconds for headers and for a body; connections open at most."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 1024


class _Waiting:
    """Per server: connections whose request is still incomplete, oldest first."""

    def __init__(self) -> None:
        self.protocols: OrderedDict[int, GuardedHttpToolsProtocol] = OrderedDict()
        self.evicted = 0
        self.timed_out = 0
        self._log = LogLimiter(logger, window_s=1.0, burst=1)

    def warn(self, what: str, client: Any) -> None:
        """One warning a second at most; the others are counted into the next one."""
        self._log.warning(what, "connection %s: %s", client, what)


def open_connections(server_state: Any) -> int:
    """How many HTTP connections the server holds (for ``/healthz``)."""
    return len(getattr(server_state, "connections", ()))


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP protocol with header/body timeouts and a connection cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits: GuardLimits = getattr(self.config, "telephony_guard", GuardLimits())
        state = self.server_state
        if not hasattr(state, "telephony_waiting"):
            state.telephony_waiting = _Waiting()  # type: ignore[attr-defined]
        self._waiting: _Waiting = state.telephony_waiting  # type: ignore[attr-defined]
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()
        if len(self.connections) > self._limits.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        for key, oldest in self._waiting.protocols.items():
            if oldest is not self:
                del self._waiting.protocols[key]
                self._waiting.evicted += 1
                self._waiting.warn("evicted: too many incomplete requests", oldest.client)
                oldest._close()
                return
        self._waiting.warn("refused: every connection is busy", self.client)
        self._close()

    def _await_headers(self) -> None:
        if self._timer is None:
            self._waiting.protocols[id(self)] = self
            self._arm(self._limits.header_timeout, "headers")

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, what: str) -> None:
        self._timer = None
        self._waiting.timed_out += 1
        self._waiting.warn(f"closed: no complete {what} in time", self.client)
        self._close()

    def _close(self) -> None:
        self._disarm()
        self._waiting.protocols.pop(id(self), None)
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_headers()  # a kept-alive connection's next request

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._arm(self._limits.body_timeout, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        self._waiting.protocols.pop(id(self), None)
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        self._waiting.protocols.pop(id(self), None)
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._waiting.protocols.pop(id(self), None)
        super().connection_lost(exc)


def guard(config: Any, limits: GuardLimits) -> Any:
    """Make a ``uvicorn.Config`` use the guarded protocol with ``limits``; returns it."""
    config.http = GuardedHttpToolsProtocol
    config.telephony_guard = limits
    return config
