"""No dead air while a tool runs: after ``FILLER_DELAY`` seconds with a tool still running and
nothing playing, the caller hears a soft hold sound (looped μ-law, ``HOLD_SOUND``), sent by
the bridge straight to Twilio: it never reaches the model's input or its conversation. It is
sent a little ahead of real time (at most ``AHEAD_MS`` queued at Twilio) and stopped with a
``clear`` the moment the agent's reply audio arrives, so it never overlaps the reply; if no
reply comes, it stops ``AFTER_TOOL_S`` after the last tool ended.

An agent author opts a tool out with :func:`telephony.agent.tools.without_filler` (a lookup
that answers at once needs no hold sound).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..agent.tools import wants_filler
from ..twilio.media_stream import clear_message

__all__ = ["ToolFiller"]

FRAME_BYTES = 160
CHUNK_MS = 200  # hold audio per media message
AHEAD_MS = 400  # hold audio queued at Twilio at most (what a clear drops)
AFTER_TOOL_S = 3.0  # no reply this long after the last tool ended: the hold sound stops


class ToolFiller:
    """One call's hold sound while tools run.

    Args:
        sound: the loop, μ-law 8 kHz, whole 20 ms frames.
        delay_s: a tool running this long (and nothing playing) starts the sound; None: tools
            never do (only :meth:`hold` does).
        send_media: sends μ-law bytes to Twilio as one ``media`` message (no mark: the hold
            sound is not the agent's audio and counts for no playback position).
        send: sends one text frame to Twilio (the ``clear``).
        stream_sid: the call's StreamSid (None until ``start``).
        idle: True when none of the agent's audio is playing or held back.
        record: writes a call-log record.
    """

    def __init__(
        self,
        sound: bytes,
        delay_s: float | None,
        send_media: Callable[[bytes], Awaitable[None]],
        send: Callable[[str], Awaitable[None]],
        stream_sid: Callable[[], str | None],
        idle: Callable[[], bool],
        record: Callable[..., Any],
    ) -> None:
        self._sound = sound
        self._delay_s = delay_s
        self._send_media = send_media
        self._send = send
        self._stream_sid = stream_sid
        self._idle = idle
        self._record = record
        self._running: dict[str, int] = {}  # tool name -> calls under way that want a filler
        self._tools_ended_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._sent_ms = 0
        self._held_for: str | None = None  # why the sound plays on request (hold)
        self.plays = 0

    async def on_session_event(self, event: Any) -> None:
        """A ``RealtimeSession`` event: tool calls start and end the hold sound, the reply's
        audio stops it."""
        kind = event.type
        if kind == "audio":
            await self.reply_starts()
        elif kind == "tool_start":
            self.tool_started(event.tool)
        elif kind == "tool_end":
            self.tool_ended(event.tool)

    def tool_started(self, tool: Any) -> None:
        """The SDK's ``tool_start``: a tool call began (opted-out tools are ignored)."""
        if not wants_filler(tool) or self._delay_s is None:
            return
        name = str(getattr(tool, "name", "tool"))
        self._running[name] = self._running.get(name, 0) + 1
        self._tools_ended_at = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._hold(), name="tool-filler")

    def tool_ended(self, tool: Any) -> None:
        """The SDK's ``tool_end``."""
        name = str(getattr(tool, "name", "tool"))
        if self._running.get(name):
            self._running[name] -= 1
            if not self._running[name]:
                del self._running[name]
        if not self._running:
            self._tools_ended_at = time.monotonic()

    def hold(self, why: str) -> None:
        """Play the hold sound now and until :meth:`release` (a warm transfer's caller on
        hold), whatever tools do; the agent's reply audio still stops it."""
        self._held_for = why
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._hold(), name="hold")

    async def release(self) -> None:
        """End a :meth:`hold` (``clear`` what is queued at Twilio)."""
        if self._held_for is not None:
            self._held_for = None
            await self._stop("released")

    async def reply_starts(self) -> None:
        """The agent's audio is about to go out: the hold sound stops first (``clear``)."""
        await self._stop("reply")

    async def close(self) -> None:
        await self._stop("call_end")

    async def _stop(self, why: str) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # a send of the loop may have found the stream closed first (the call is ending: a
        # conference took it, Twilio hung up): that must not end the call without its log
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if self._sent_ms:
            stream_sid = self._stream_sid()
            if why != "call_end" and stream_sid is not None:
                await self._send(clear_message(stream_sid))
            self._record("hold.stopped", why=why, sent_ms=self._sent_ms)
        self._sent_ms = 0

    async def _hold(self) -> None:
        started = time.monotonic()
        if self._held_for is None:
            await asyncio.sleep(self._delay_s or 0.0)
        after_ms = round((time.monotonic() - started) * 1000)
        if self._held_for is not None:  # asked for (now, or while a tool's delay ran)
            self._record("hold.started", why=self._held_for, after_ms=after_ms)
        elif not self._running or not self._idle():
            return
        else:
            self._record("hold.started", tools=sorted(self._running), after_ms=after_ms)
        self.plays += 1
        position = 0
        t0 = time.monotonic()
        while True:
            ended = self._tools_ended_at
            stale = ended is not None and time.monotonic() - ended > AFTER_TOOL_S
            if stale and self._held_for is None:
                self._record("hold.stopped", why="no_reply", sent_ms=self._sent_ms)
                self._sent_ms = 0
                return
            ahead_ms = self._sent_ms - (time.monotonic() - t0) * 1000
            if ahead_ms < AHEAD_MS:
                chunk = self._loop(position, CHUNK_MS * 8)
                position = (position + len(chunk)) % len(self._sound)
                await self._send_media(chunk)
                self._sent_ms += CHUNK_MS
                continue
            await asyncio.sleep(CHUNK_MS / 2000)

    def _loop(self, position: int, size: int) -> bytes:
        sound = self._sound
        out = bytearray()
        while len(out) < size:
            piece = sound[position : position + size - len(out)]
            out += piece
            position = (position + len(piece)) % len(sound)
        return bytes(out)
