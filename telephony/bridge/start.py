"""The start of a media stream: ``connected``, then ``start``, admitted or refused.

Anything else before ``start`` is refused and counted; a socket that sends no ``start`` within
the start timeout is closed with 1008, and so is one whose ``start`` admission refuses (with
the code the refusal names). Warnings here can be caused by strangers, so they come at a
bounded rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..admission import POLICY_VIOLATION, Refused
from ..observability.ratelimit import LogLimiter
from ..twilio.media_stream import Connected, ProtocolError, Start, parse_message
from .socket import Admit, TwilioSocket

__all__ = ["StartOutcome", "StartWait", "await_start", "start_record"]

logger = logging.getLogger("telephony.bridge")
_warnings = LogLimiter(logger)


@dataclass
class StartOutcome:
    """How a stream began: its admitted ``start`` (with fields for the ``stream.start`` record),
    or the reason and close code of a stream that did not."""

    start: Start | None = None
    admitted: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    close_code: int = 1000
    bad_frames: int = 0


async def await_start(
    socket: TwilioSocket, within_s: float, admit: Admit | None, call: Any
) -> StartOutcome:
    """Read frames until an admitted ``start``, a refusal, a closed socket or ``within_s``
    seconds."""
    outcome = StartOutcome()
    deadline = time.monotonic() + within_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _warnings.warning("no start", "call ?: no start message in time")
            outcome.reason, outcome.close_code = "no_start", POLICY_VIOLATION
            return outcome
        try:
            async with asyncio.timeout(remaining):
                frame = await socket.receive()
        except TimeoutError:
            continue
        if frame is None:
            logger.info("call ?: socket closed before start")
            outcome.reason = "twilio_closed_before_start"
            return outcome
        try:
            message = parse_message(frame)
        except ProtocolError as exc:
            outcome.bad_frames += 1
            _warnings.warning("bad frame", "call ?: bad frame before start: %s", exc)
            continue
        if isinstance(message, Start):
            if admit is not None:
                try:
                    outcome.admitted = await admit(message, call)
                except Refused as refused:
                    _warnings.warning("refused", "stream refused: %s", refused.reason)
                    outcome.reason = f"refused: {refused.reason}"
                    outcome.close_code = refused.code
                    return outcome
            outcome.start = message
            return outcome
        if not isinstance(message, Connected):
            outcome.bad_frames += 1
            _warnings.warning("early", "call ?: %r before start, ignored", message.event)


class StartWait:
    """One socket's wait for ``start`` (:func:`await_start`), which a newer socket may cut
    short: at most ``MAX_CONCURRENT_CALLS`` sockets wait at once, and the oldest gives way."""

    def __init__(self) -> None:
        self._task: asyncio.Task[StartOutcome] | None = None
        self._evicted = False

    async def run(
        self, socket: TwilioSocket, within_s: float, admit: Admit | None, call: Any
    ) -> StartOutcome:
        """:func:`await_start`'s outcome, or ``evicted_before_start`` (close 1008) when
        :meth:`evict` cut it short. Cancelling the caller cancels the wait (shutdown)."""
        if not self._evicted:
            self._task = asyncio.create_task(await_start(socket, within_s, admit, call))
            try:
                return await self._task
            except asyncio.CancelledError:
                if not self._evicted:
                    raise  # the call itself was cancelled
        logger.info("call ?: socket waiting for start closed for a newer one")
        return StartOutcome(reason="evicted_before_start", close_code=POLICY_VIOLATION)

    def evict(self) -> None:
        """Stop waiting (a newer socket needs the room); nothing once ``start`` has come."""
        if self._task is None or not self._task.done():
            self._evicted = True
            if self._task is not None:
                self._task.cancel()


def start_record(start: Start) -> tuple[dict[str, Any], str | None]:
    """The ``stream.start`` record's fields (StreamSid, tracks, media format, the TwiML's
    parameters without the stream token), and what is wrong with the media format, if
    anything (Media Streams sends μ-law, 8 kHz, mono)."""
    fmt = start.start.media_format
    fields = {
        "stream_sid": start.stream_sid,
        "tracks": start.start.tracks,
        "media_format": {
            "encoding": fmt.encoding,
            "sample_rate": fmt.sample_rate,
            "channels": fmt.channels,
        },
        "custom_parameters": {k: v for k, v in start.custom_parameters.items() if k != "token"},
    }
    usual = fmt.encoding == "audio/x-mulaw" and fmt.sample_rate == 8000 and fmt.channels == 1
    return fields, None if usual else f"unexpected media format {fmt!r}"
