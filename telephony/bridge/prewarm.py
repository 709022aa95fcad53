"""Model sessions opened while the phone rings: first words at once.

Between Twilio's Voice webhook and the Media Stream's ``start`` the caller waits for TwiML to be
fetched and the stream's WebSocket to open; a model session opened only at ``start`` adds its
whole connect (TCP, TLS, the WebSocket upgrade, ``session.update``) and the first audio delta
to the wait. :class:`PrewarmPool` opens the call's session at the webhook instead, keyed by
CallSid, and asks for the greeting at once: the SDK's ``RealtimeSession`` queues every event
until someone reads it, so the greeting's audio waits in the session and goes out from its first
frame as soon as the stream adopts it (:meth:`PrewarmPool.take`).

Nothing leaks: a session no stream adopts is closed after ``hold_s`` (``MODEL_PREWARM_TIMEOUT``),
at once on a final call status (busy, no-answer, canceled, failed, completed) and at shutdown.
The pool holds at most ``room()`` sessions (the webhook's capacity check); a replayed webhook
finds its CallSid taken and opens nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.realtime import RealtimeSession

from ..agent.sessions import greet
from ..agent.tools import CallContext
from ..observability.call_log import describe_error
from .supervisor import OpenSession
from .tracker import PhonePlaybackTracker

__all__ = ["FINAL_CALL_STATUSES", "PrewarmPool", "Prewarmed"]

logger = logging.getLogger("telephony.bridge")

FINAL_CALL_STATUSES = frozenset({"busy", "no-answer", "canceled", "failed", "completed"})
"""Twilio ``CallStatus`` values after which no stream will come."""


@dataclass
class Prewarmed:
    """A connected session handed to the call's stream.

    Attributes:
        session: connected; its queued events (``session.created``, the greeting's audio) are
            read by the stream's pump.
        tracker: the session's playback tracker (the stream tells it what played).
        context: the session's tool context; the stream attaches its control.
        greeted: the greeting was asked for (the stream must not ask again).
        waited_s: from the webhook to adoption.
        connect_ms: how long the connect took.
    """

    session: RealtimeSession
    tracker: PhonePlaybackTracker
    context: CallContext
    greeted: bool
    waited_s: float
    connect_ms: float


@dataclass
class _Entry:
    task: asyncio.Task[Prewarmed | None]
    opened_at: float
    timer: asyncio.TimerHandle | None = None


class PrewarmPool:
    """Model sessions opened at the webhook, waiting for their call's stream.

    Args:
        open_session: builds a call's session (not yet connected).
        greeting: asked for as soon as the session is connected ('' for none).
        connect_timeout_s: the connect's bound (``CallLimits.connect_timeout``).
        hold_s: an unadopted session is closed this long after the webhook.
        close_timeout_s: the bound on each close.
        room: whether one more session may be opened now (capacity).
        note: ``(call_sid, fields)``: writes a ``prewarm`` record to the call's log.
    """

    def __init__(
        self,
        open_session: OpenSession,
        greeting: str,
        *,
        connect_timeout_s: float,
        hold_s: float,
        close_timeout_s: float = 5.0,
        room: Callable[[], bool] = lambda: True,
        note: Callable[[str, dict[str, Any]], None] = lambda sid, fields: None,
    ) -> None:
        self._open_session = open_session
        self._greeting = greeting
        self._connect_timeout_s = connect_timeout_s
        self.hold_s = hold_s
        self._close_timeout_s = close_timeout_s
        self._room = room
        self._note = note
        self._entries: dict[str, _Entry] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, call_sid: object) -> bool:
        return call_sid in self._entries

    def open(self, call_sid: str, hold_s: float | None = None) -> bool:
        """Open ``call_sid``'s session in the background and ask for the greeting; False (and
        nothing opened) when the CallSid has one already or there is no room. ``hold_s``
        overrides the pool's bound (an outbound call rings first). The ``opened`` record is
        the caller's to write; the pool writes the others."""
        if call_sid in self._entries or not self._room():
            return False
        task = asyncio.create_task(self._open(call_sid), name=f"prewarm:{call_sid}")
        entry = _Entry(task, time.monotonic())
        loop = asyncio.get_running_loop()
        hold = self.hold_s if hold_s is None else hold_s
        entry.timer = loop.call_later(hold, self._expire, call_sid, entry)
        self._entries[call_sid] = entry
        return True  # the caller notes `opened` (after its own record of the webhook)

    async def take(self, call_sid: str) -> Prewarmed | None:
        """The stream of ``call_sid`` started: its session (waiting for a connect still under
        way), or None when there is none or it failed to connect (the stream connects as
        before)."""
        entry = self._entries.pop(call_sid, None)
        if entry is None:
            return None
        if entry.timer is not None:
            entry.timer.cancel()
        try:
            prewarmed = await asyncio.shield(entry.task)
        except asyncio.CancelledError:  # the call ended meanwhile: nobody else will close it
            self._spawn_close(entry)
            raise
        except Exception:  # _open records its own failures
            prewarmed = None
        if prewarmed is not None:
            prewarmed.waited_s = time.monotonic() - entry.opened_at
        return prewarmed

    def discard(self, call_sid: str, reason: str) -> bool:
        """Close ``call_sid``'s session, if one waits (a final call status, the stream on
        another instance); False when none did."""
        entry = self._entries.pop(call_sid, None)
        if entry is None:
            return False
        self._close_entry(call_sid, entry, reason)
        return True

    async def close(self) -> None:
        """Close every waiting session (shutdown)."""
        for call_sid in list(self._entries):
            self.discard(call_sid, "shutdown")
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _expire(self, call_sid: str, entry: _Entry) -> None:
        if self._entries.get(call_sid) is entry:
            del self._entries[call_sid]
            self._close_entry(call_sid, entry, "timeout")

    def _close_entry(self, call_sid: str, entry: _Entry, reason: str) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
        self._spawn_close(entry)
        waited = round(time.monotonic() - entry.opened_at, 3)
        self._safe_note(call_sid, {"outcome": "discarded", "reason": reason, "waited_s": waited})

    def _spawn_close(self, entry: _Entry) -> None:
        task = asyncio.create_task(self._close(entry), name="prewarm-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _safe_note(self, call_sid: str, fields: dict[str, Any]) -> None:
        """The call-log note; a failed write (disk full, no descriptors) is logged, and never
        stops a close or fails the webhook."""
        try:
            self._note(call_sid, fields)
        except Exception as exc:
            logger.warning("call %s: prewarm record not written: %s", call_sid, exc)

    async def _close(self, entry: _Entry) -> None:
        if not entry.task.done():
            entry.task.cancel()
        try:
            prewarmed = await entry.task
        except (Exception, asyncio.CancelledError):
            return  # never connected (its own cleanup closed it)
        if prewarmed is not None:
            await self._close_session(prewarmed.session)

    async def _close_session(self, session: RealtimeSession) -> None:
        """Close, bounded by ``close_timeout_s`` (a model may drop without a close frame)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._close_timeout_s):
                await session.close()

    async def _open(self, call_sid: str) -> Prewarmed | None:
        """Connect and greet; None (recorded) when it failed."""
        tracker = PhonePlaybackTracker()
        context = CallContext(call_sid=call_sid, pending=True)  # its stream attaches control
        t0 = time.monotonic()
        session: RealtimeSession | None = None
        try:
            session = await self._open_session(tracker, context)
            async with asyncio.timeout(self._connect_timeout_s):
                await session.enter()
            connect_ms = round((time.monotonic() - t0) * 1000, 1)
            if self._greeting:
                await greet(session, self._greeting)
        except asyncio.CancelledError:
            if session is not None:
                await asyncio.shield(self._close_session(session))
            raise
        except Exception as exc:
            if session is not None:
                await self._close_session(session)
            self._safe_note(call_sid, {"outcome": "failed", "error": describe_error(exc)})
            logger.info("call %s: pre-warm failed: %s", call_sid, describe_error(exc))
            return None
        return Prewarmed(session, tracker, context, bool(self._greeting), 0.0, connect_ms)
