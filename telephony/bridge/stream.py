"""What the two Media Streams bridges share, the Realtime one (:mod:`.call`) and GPT-Live's
(:mod:`.live_call`): ending a call from inside a pump (:class:`CallEnded`), the caller's audio
clock, sending to Twilio, the call's records and the ways a call is asked to end."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..admission import POLICY_VIOLATION
from ..observability.call_log import CallLog, describe_error
from ..twilio.media_stream import Dtmf, Mark, Media, ProtocolError, Start, Stop, parse_message
from .socket import TwilioSocket
from .start import StartWait
from .watchdog import CallWatchdog

__all__ = ["CallEnded", "StreamCall", "apologise", "reason_of"]

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


async def apologise(
    tell: Callable[[str, str], Awaitable[str]] | None,
    call_sid: str,
    reason: str,
    timeout_s: float,
    record: Callable[..., Any],
    fallback: Callable[[], Awaitable[str]] | None = None,
) -> None:
    """We are ending the call (model gone, shutdown, time limit): ``tell(call_sid, reason)``
    the caller (Twilio's REST ``<Say>``; returns how) within ``timeout_s``, or, when that
    reached nobody (``none …``), ``fallback()`` (the recorded apology over the stream).
    Writes ``call.apology``. Never raises."""
    via = "none (stream closed)"
    try:
        if tell is not None:
            async with asyncio.timeout(timeout_s):
                via = await tell(call_sid, reason)
        if via.startswith("none") and fallback is not None:
            via = await fallback()
        record("call.apology", via=via, reason=reason)
    except Exception as exc:
        record("call.apology", via="failed", reason=reason, error=describe_error(exc))


class StreamCall:
    """The parts of one Media Streams call that do not depend on the model (a base class:
    the bridge sets these attributes in its ``__init__``)."""

    _socket: TwilioSocket
    _log: CallLog | None
    _start_wait: StartWait
    _caller_samples: int
    watchdog: CallWatchdog
    inbound: Any
    out: Any
    control: Any
    route: Any  # the caller audio on its way to the model (``muted`` on a warm transfer's hold)
    filler: Any  # the hold sound, or None
    call_sid: str | None
    end_reason: str | None
    _close_code: int

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

    async def _read_caller(self) -> None:
        """The caller's socket until the call ends: each frame parsed and checked, its audio
        to :meth:`_caller_media`, mark echoes to the outbound audio, keys to call control;
        ``stop``, a closed socket, or abuse end the call (:class:`CallEnded`)."""
        while True:
            frame = await self._socket.receive()
            if frame is None:
                raise CallEnded("twilio_disconnected")
            t0 = time.perf_counter()
            try:
                message = parse_message(frame)
                self.inbound.check(message)
            except ProtocolError as exc:
                if self.inbound.refused(str(exc), time.monotonic()):
                    self._close_code = POLICY_VIOLATION
                    raise CallEnded("protocol_abuse") from None
                continue
            if isinstance(message, Media):
                self.watchdog.last_media_at = now = time.monotonic()
                self._caller_samples += len(message.payload)  # μ-law: a byte a sample
                await self._caller_media(message.payload, now, t0)
            elif isinstance(message, Mark):
                self.out.on_mark_echo(message.name)
            elif isinstance(message, Dtmf):
                self.control.on_dtmf(message.digit)
            elif isinstance(message, Stop):
                self._record("stream.stop")
                raise CallEnded(self.control.stop_reason)  # caller_hangup, or ours
            elif isinstance(message, Start) and self.inbound.refused(
                "duplicate start", time.monotonic()
            ):
                self._close_code = POLICY_VIOLATION
                raise CallEnded("protocol_abuse")
            # Connected after start: harmless, ignored.

    async def _caller_media(self, ulaw: bytes, now: float, t0: float) -> None:
        """One caller frame (μ-law 8 kHz) that arrived at ``now`` (``time.monotonic()``;
        ``t0``: ``time.perf_counter()`` when its parsing began), counted on the caller's
        clock already: to the model (the bridge's own)."""
        raise NotImplementedError

    def _dropped(self) -> None:
        """A caller frame was dropped ahead of real time: too many end the call."""
        if self.inbound.abusive:
            self._close_code = POLICY_VIOLATION
            raise CallEnded("audio_abuse")

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
