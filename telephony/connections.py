"""Connection guard for uvicorn: header and body timeouts, and a cap on open connections.

uvicorn closes idle keep-alive connections, but a client that connects and sends nothing, or
sends its headers or body a byte at a time, is kept forever; a few hundred such sockets use up
the process's file descriptors and nothing else gets in, ``/healthz`` included.
:class:`GuardedHttpToolsProtocol` (uvicorn's httptools protocol plus three rules) fixes that:

- a request's headers must arrive within ``header_timeout`` of the connection (or of the
  request's first byte on a kept-alive connection), its body within ``body_timeout`` of the
  headers; otherwise the connection is closed;
- at most :data:`MAX_PIPELINED` requests may wait behind the one being answered (browsers and
  HTTP clients do not pipeline; hundreds in one write is an attack);
- a response must keep draining: a client that stops reading (its writes paused past the
  transport's high-water mark, as when it pipelines hundreds of requests and reads nothing)
  for ``body_timeout`` is closed;
- at most ``max_connections`` are open; a new one beyond that evicts the oldest connection whose
  request is still incomplete (headers or body), else the oldest whose client stopped reading,
  else an idle kept-alive one, else the one with the most requests pipelined, or is closed at
  once if every open one has a single request in hand.

Closing here aborts the connection (``transport.abort()``): ``close()`` would wait to flush
data a client that does not read never takes, and keep its file descriptor.

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

MAX_PIPELINED = 16  # requests queued behind the one in progress on a connection


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
        self.stalled: OrderedDict[int, GuardedHttpToolsProtocol] = OrderedDict()  # not reading
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
        self._stall_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()
        if len(self.connections) > self._limits.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        for waiting, why in (
            (self._waiting.protocols, "evicted: too many incomplete requests"),
            (self._waiting.stalled, "evicted: too many connections, this one not reading"),
        ):
            oldest = next((p for p in waiting.values() if p is not self), None)
            if oldest is not None:
                self._waiting.evicted += 1
                self._waiting.warn(why, oldest.client)
                oldest._close()
                return
        others = [
            p for p in self.connections if p is not self and isinstance(p, GuardedHttpToolsProtocol)
        ]
        idle = next((p for p in others if p._idle), None)
        if idle is not None:
            self._waiting.evicted += 1
            idle._close()  # kept alive for a next request: it can open a new connection
            return
        piped = max(others, key=lambda p: len(p.pipeline), default=None)
        if piped is not None and piped.pipeline:  # browsers and HTTP clients do not pipeline
            self._waiting.evicted += 1
            self._waiting.warn("evicted: too many connections, this one pipelining", piped.client)
            piped._close()
            return
        self._waiting.warn("refused: every connection is busy", self.client)
        self._close()

    @property
    def _idle(self) -> bool:
        """Kept alive between requests: nothing being read, answered or queued."""
        answered = self.cycle is None or self.cycle.response_complete
        return answered and not self.pipeline and id(self) not in self._waiting.protocols

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
        self._unstall()
        self._waiting.protocols.pop(id(self), None)
        self.transport.abort()  # now: close() would wait for a reader that never reads

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark: the client is not reading."""
        super().pause_writing()
        if self._stall_timer is None:
            self._waiting.stalled[id(self)] = self
            self._stall_timer = self.loop.call_later(
                self._limits.body_timeout, self._timed_out, "read of the response"
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._unstall()

    def _unstall(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._waiting.stalled.pop(id(self), None)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_headers()  # a kept-alive connection's next request

    def on_headers_complete(self) -> None:
        self._disarm()
        if self.transport.is_closing():
            return  # closed below while httptools still parses the rest of one write
        super().on_headers_complete()
        if len(self.pipeline) > MAX_PIPELINED:
            self._waiting.warn(f"closed: over {MAX_PIPELINED} requests pipelined", self.client)
            self._close()
        elif not (self.parser.should_upgrade() and self._should_upgrade()):
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
        self._unstall()
        self._waiting.protocols.pop(id(self), None)
        super().connection_lost(exc)


def guard(config: Any, limits: GuardLimits) -> Any:
    """Make a ``uvicorn.Config`` use the guarded protocol with ``limits``; returns it."""
    config.http = GuardedHttpToolsProtocol
    config.telephony_guard = limits
    return config
