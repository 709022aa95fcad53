"""Caller audio to the model session that takes it now, held while a session is replaced.

While the supervisor replaces a session (a reconnect, a renewal) caller audio is held, up to
``HELD_MAX_FRAMES`` (the oldest is dropped beyond); the next session hears the last
``PREROLL_FRAMES`` the old one heard again (a speech onset its VAD had not reported yet reaches
the new one whole), then everything held, in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from agents.realtime import RealtimeSession

from ..agent.sessions import closed_going_away
from ..observability.call_log import describe_error

__all__ = ["HELD_MAX_FRAMES", "PREROLL_FRAMES", "CallerAudioRoute"]

HELD_MAX_FRAMES = 1500  # 30 s of caller audio held while a session is replaced
PREROLL_FRAMES = 15  # the last 300 ms the old session heard, heard again by the next one


class CallerAudioRoute:
    """Where one call's caller audio (pcm16 24 kHz frames) goes.

    Args:
        record: writes a call-log record (``model.error`` / ``model.closed`` on a failed send).
        on_attach: called with the number of frames still held when a session takes over.
    """

    def __init__(self, record: Callable[..., Any], on_attach: Callable[[int], None]) -> None:
        self._record = record
        self._on_attach = on_attach
        self.target: RealtimeSession | None = None  # where caller audio goes now
        self.broken = asyncio.Event()  # a send to the session failed: it is gone
        self.attached = asyncio.Event()  # a session took the audio at least once
        self._held: deque[bytes] = deque()  # caller audio while no session takes it
        self._recent: deque[bytes] = deque(maxlen=PREROLL_FRAMES)  # sent to the session
        self.held_dropped = 0
        self.muted = False  # the session hears silence instead (a caller on hold)

    async def attach(self, session: RealtimeSession) -> None:
        """Caller audio goes to ``session`` from now on, the audio held meanwhile first;
        raises if a send fails (what was not sent stays held)."""
        self._on_attach(len(self._held))
        while self._held:
            pcm = self._held.popleft()
            try:
                await session.send_audio(pcm)
            except Exception:
                self._held.appendleft(pcm)
                raise
            self._recent.append(pcm)
        self.target = session
        self.broken.clear()
        self.attached.set()

    def detach(self) -> bool:
        """Hold caller audio until a session is attached again, the last ``PREROLL_FRAMES``
        the old session heard first. False if it was already held."""
        if self.target is None:
            return False
        self.target = None
        self._held.extendleft(reversed(self._recent))
        self._recent.clear()
        return True

    async def deliver(self, pcm: bytes) -> None:
        """One caller frame to the session (silence while :attr:`muted`), or held while
        there is none. A failed send detaches the session, sets :attr:`broken` and holds the
        frame (the supervisor, which reads the session's last events, says whether it was the
        cap: a clean 1001 close is ``model.closed``, anything else ``model.error``)."""
        if self.muted:
            pcm = bytes(len(pcm))
        target = self.target
        if target is None:  # a session is being replaced: hold, deliver later
            self._hold(pcm)
            return
        try:
            await target.send_audio(pcm)
        except Exception as exc:
            if self.target is target:
                event = "model.closed" if closed_going_away(exc) else "model.error"
                self._record(event, where="send_audio", error=describe_error(exc))
                self.detach()
                self.broken.set()
            self._hold(pcm)
            return
        self._recent.append(pcm)

    def _hold(self, pcm: bytes) -> None:
        if len(self._held) >= HELD_MAX_FRAMES:
            self._held.popleft()
            self.held_dropped += 1
        self._held.append(pcm)
