"""Call control on a Media Streams call: keypad digits to the agent, ``end_call`` and
``transfer_call`` through Twilio's REST API.

Implements :class:`telephony.agent.tools.CallControl` for the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents.realtime import RealtimeSession

from ..agent.tools import transfer_refusal
from ..config import CallFeatures
from ..observability.call_log import describe_error
from ..observability.recorder import SessionRecorder
from ..twilio.rest import TwilioCalls
from ..twilio.twiml import dial_twiml
from .outbound import OutboundAudio

__all__ = ["DTMF_TEXT", "MediaCallControl"]

DTMF_TEXT = "The caller pressed these keys on the phone keypad: {}"
POLL_S = 0.02
TRANSFER_WAIT_POLLS = 250  # up to 5 s: let "I am transferring you" finish playing


class MediaCallControl:
    """DTMF, hang-up and transfer for one call.

    Args:
        features: greeting, DTMF timeout, hang-up grace, transfer allow-list.
        twilio: REST access to the live call; None closes the stream instead.
        record: writes a call-log record.
        recorder: the session's recorder (response counters: when the goodbye has finished).
        outbound: the call's outbound audio (whether everything sent has played).
        end: asks the call to end with a reason.
    """

    def __init__(
        self,
        features: CallFeatures,
        twilio: TwilioCalls | None,
        record: Callable[..., Any],
        recorder: SessionRecorder,
        outbound: OutboundAudio,
        end: Callable[[str], None],
    ) -> None:
        self._features = features
        self._twilio = twilio
        self._record = record
        self._recorder = recorder
        self._outbound = outbound
        self._end = end
        self.call_sid: str | None = None
        self.session: RealtimeSession | None = None  # the session in use now
        self._digits: list[str] = []
        self._dtmf_task: asyncio.Task[None] | None = None
        self._hangup_task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Cancel pending digits and a pending hang-up (the call is over)."""
        for task in (self._dtmf_task, self._hangup_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # ------------------------------------------------------------------ keypad

    def on_dtmf(self, digit: str) -> None:
        """Collect keys until ``#`` or ``dtmf_timeout`` of quiet, then tell the agent."""
        self._record("dtmf", digit=digit)
        self._digits.append(digit)
        if self._dtmf_task is not None:
            self._dtmf_task.cancel()
        delay = 0.0 if digit == "#" else self._features.dtmf_timeout
        self._dtmf_task = asyncio.create_task(self._send_digits_after(delay))

    async def _send_digits_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        digits, self._digits = self._digits, []
        session = self.session
        if not digits or session is None:
            return
        text = DTMF_TEXT.format(" ".join(digits))
        try:
            await session.send_message(text)
            self._record("dtmf.sent", digits="".join(digits), text=text)
        except Exception as exc:
            self._record("model.error", where="dtmf", error=describe_error(exc))

    # ------------------------------------------------------------------ CallControl

    async def hang_up(self, reason: str) -> str:
        """``end_call``: hang up once the goodbye has played."""
        if self._hangup_task is not None:
            return "The call is already ending."
        self._record("hangup.requested", reason=reason)
        self._hangup_task = asyncio.create_task(self._hang_up_after_goodbye())
        return "The call will end as soon as your goodbye has played. Say a short goodbye now."

    async def _hang_up_after_goodbye(self) -> None:
        started_before = self._recorder.responses_started
        t0 = time.monotonic()
        deadline = t0 + self._features.hangup_grace
        while time.monotonic() < deadline:
            goodbye_done = self._recorder.responses_idle_since(started_before)
            if goodbye_done and self._outbound.idle:
                break
            await asyncio.sleep(POLL_S)
        waited_ms = round((time.monotonic() - t0) * 1000)
        via = await self._rest("hang up", lambda twilio, sid: twilio.hang_up(sid))
        self._record("call.hangup", via=via, waited_ms=waited_ms)
        self._end("agent_hangup")

    async def transfer(self, destination: str) -> str:
        """``transfer_call``: update the live call with ``<Dial>`` to an allowed destination."""
        target = self._features.transfer_targets.get(destination)
        if target is None:
            self._record("transfer.refused", destination=str(destination)[:80])
            return transfer_refusal(self._features.transfer_targets, destination)
        if self._twilio is None:
            self._record("transfer.refused", destination=destination, why="no REST credentials")
            return "Transfers are not available on this line."
        for _ in range(TRANSFER_WAIT_POLLS):
            if self._outbound.playback.unplayed_ms == 0:
                break
            await asyncio.sleep(POLL_S)
        twiml = dial_twiml(target)
        via = await self._rest("transfer", lambda twilio, sid: twilio.update_twiml(sid, twiml))
        self._record("call.transfer", destination=destination, target=target, via=via)
        self._end("transferred")
        return f"Transferring the caller to {destination} now."

    async def _rest(self, what: str, action: Callable[[TwilioCalls, str], Awaitable[bool]]) -> str:
        """Run one REST update of this call; returns how it went, for the log. Never raises."""
        if self._twilio is None or self.call_sid is None:
            return "none (no Twilio REST credentials; stream closed)"
        try:
            done = await action(self._twilio, self.call_sid)
        except Exception as exc:
            self._record("twilio.error", action=what, error=describe_error(exc))
            return "twilio_rest failed"
        return "twilio_rest" if done else "twilio_rest (call already ended)"
