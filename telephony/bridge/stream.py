"""What the two Media Streams bridges share, the Realtime one (:mod:`.call`) and GPT-Live's
(:mod:`.live_call`): ending a call from inside a pump (:class:`CallEnded`), the caller's audio
clock, sending to Twilio, the call's records and the ways a call is asked to end."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..observability.call_log import CallLog
from .socket import TwilioSocket
from .start import StartWait
from .watchdog import CallWatchdog

__all__ = ["CallEnded", "StreamCall", "reason_of"]

logger = logging.getLogger("telephony.bridge")


class CallEnded(Exception):
    """Raised inside a pump to end the call with a reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def reason_of(task: asyncio.Task[Any]) -> str | None:
    """The reason a finished pump task ended the call with, if it raised :class:`CallEnded`."""
    exc = None if task.cancelled() else task.exception()
    return exc.reason if isinstance(exc, CallEnded) else None


class StreamCall:
    """The parts of one Media Streams call that do not depend on the model (a base class:
    the bridge sets these attributes in its ``__init__``)."""

    _socket: TwilioSocket
    _log: CallLog | None
    _start_wait: StartWait
    _caller_samples: int
    watchdog: CallWatchdog
    inbound: Any
    call_sid: str | None
    end_reason: str | None

    @property
    def caller_s(self) -> float:
        """The caller's audio clock: seconds of caller audio received (8000 samples a
        second, counted in whole samples)."""
        return self._caller_samples / 8000

    def evict(self) -> None:
        """Close the socket if it still waits for ``start`` (see :meth:`StartWait.evict`)."""
        self._start_wait.evict()

    def end(self, reason: str) -> None:
        """Ask the call to end (e.g. ``server_shutdown``): goodbye if it can, then it closes."""
        self.watchdog.request(reason)

    async def _watch(self) -> None:
        """End the call when asked to, when the caller was silent too long, or it ran too long."""
        raise CallEnded(await self.watchdog.run())

    async def _send(self, text: str) -> None:
        try:
            await self._socket.send(text)
        except Exception as exc:
            raise CallEnded("twilio_disconnected") from exc

    def _first_frame_out(self, now: float) -> None:
        self._record(
            "audio.first_out",
            ms_after_start=round((now - self.watchdog.started_at) * 1000, 1),
            frames_in_before=self.inbound.frames_in,
        )

    def _set_reason(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason

    def _record(self, event: str, **fields: Any) -> None:
        if self._log is not None:
            self._log.write(event, **fields)
        elif event.endswith("error"):
            logger.warning("call %s: %s %s", self.call_sid, event, fields)
