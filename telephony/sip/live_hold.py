"""The hold sound while a tool runs, on a GPT-Live SIP call: fixture audio over the sideband.

On the SIP path the call's audio never passes through us, so the Media Streams bridge's hold
loop (:mod:`telephony.bridge.hold`) cannot play; GPT-Live's sideband can play *fixture* audio
(``session.output_audio.fixture.play``: pcm16 24 kHz, at most 30 s, one at a time; it
interrupts the model's speech and drops caller input while it plays, and no client event
stops it). The Realtime SIP path has no such thing (openai-agents-js#710).

A tool that wants a filler (:func:`~telephony.agent.tools.wants_filler`) still running after
``FILLER_DELAY`` starts the ``HOLD_SOUND`` loop, played in pieces of :data:`PIECE_S`: the next
piece only once the server reported the last one ``fixture.played`` and a tool still runs, so
the hold ends at most one piece after the last tool and the caller is never deaf for longer
than that. Records: ``hold.started`` (``tools``, ``after_ms``), ``hold.stopped`` (``why``:
``tools_done`` or ``call_end``; ``sent_ms``). Whether the caller hears a fixture exactly as
sent, and how soon, only a real call can confirm (``docs/gpt-live.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from ..agent.live import LiveSession
from ..agent.tools import wants_filler
from ..audio import CallerToModel

__all__ = ["PIECE_S", "FixtureHold"]

PIECE_S = 1.0  # hold audio per fixture
PLAYED_WAIT_S = PIECE_S + 2.0  # no fixture.played this long after a piece: go on anyway
PCM24_PER_S = 48000  # bytes of pcm16 24 kHz mono a second


class FixtureHold:
    """One SIP call's hold sound while its delegate's tools run.

    Args:
        sound: the loop, μ-law 8 kHz (``HOLD_SOUND``); empty: no hold sound.
        delay_s: seconds a tool runs before the sound starts (``FILLER_DELAY``); None: never.
        session: the call's sideband session (its :meth:`~LiveSession.play_fixture`).
        record: writes a call-log record.
    """

    def __init__(
        self,
        sound: bytes,
        delay_s: float | None,
        session: LiveSession,
        record: Callable[..., Any],
    ) -> None:
        self._loop = CallerToModel().feed(sound) if sound else b""
        self._delay_s = delay_s
        self._session = session
        self._record = record
        self._running: dict[str, int] = {}  # tool name -> calls under way that want it
        self._task: asyncio.Task[None] | None = None
        self._position = 0
        self.pieces = 0
        self.sent_ms = 0

    def on_tool(self, phase: str, tool: Any) -> None:
        """A delegated tool call ``start``\\ s or ends (opted-out tools are ignored)."""
        if not self._loop or self._delay_s is None or not wants_filler(tool):
            return
        name = str(getattr(tool, "name", "tool"))
        if phase == "start":
            self._running[name] = self._running.get(name, 0) + 1
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._hold(), name="sip-hold")
        elif self._running.get(name):
            self._running[name] -= 1
            if not self._running[name]:
                del self._running[name]

    async def close(self) -> None:
        """The call ends: no further piece."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self._stopped("call_end")

    async def _hold(self) -> None:
        started = time.monotonic()
        await asyncio.sleep(self._delay_s or 0.0)
        if not self._running:
            return
        after_ms = round((time.monotonic() - started) * 1000)
        self._record("hold.started", tools=sorted(self._running), after_ms=after_ms, via="fixture")
        while self._running:
            await self._session.play_fixture(self._piece())
            self.pieces += 1
            self.sent_ms += round(PIECE_S * 1000)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PLAYED_WAIT_S):
                    await self._session.fixture_idle.wait()
        self._stopped("tools_done")

    def _stopped(self, why: str) -> None:
        if self.sent_ms:
            self._record("hold.stopped", why=why, sent_ms=self.sent_ms, pieces=self.pieces)
        self.sent_ms = 0

    def _piece(self) -> bytes:
        """The next :data:`PIECE_S` of the loop, from where the last piece ended."""
        size = int(PIECE_S * PCM24_PER_S)
        out = bytearray()
        while len(out) < size:
            take = self._loop[self._position : self._position + size - len(out)]
            out += take
            self._position = (self._position + len(take)) % len(self._loop)
        return bytes(out)
