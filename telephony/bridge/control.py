"""Call control on a Media Streams call: the shared core (:mod:`telephony.control`) with
Twilio as the carrier, and what only this path does: keypad digits to the agent, and what to do
when answering machine detection says a machine or a fax answered an outbound call.

Twilio's steps (:class:`TwilioCarrier`): the caller heard a response once the marks after its
audio echoed; hang-up and transfer are REST updates of the live call (``Status=completed``,
TwiML ``<Dial>``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..agent.sessions import leave_voicemail
from ..config import CallFeatures
from ..control import CallController
from ..observability.call_log import describe_error
from ..observability.recorder import SessionRecorder
from ..twilio.dial import MACHINE
from ..twilio.rest import TwilioCalls
from ..twilio.twiml import dial_twiml
from .keypad import Keypad
from .outbound import OutboundAudio

__all__ = ["MediaCallControl", "TwilioCarrier"]

POLL_S = 0.02
TRANSFER_WAIT_POLLS = 250  # up to 5 s: let "I am transferring you" finish playing


class TwilioCarrier:
    """The carrier steps of a Media Streams call (:class:`telephony.control.Carrier`).

    Args:
        twilio: REST access to the live call; None: the stream just closes.
        record: writes a call-log record.
        recorder: the session's recorder (when a response has ended).
        outbound: the call's outbound audio (whether everything sent has played).
    """

    def __init__(
        self,
        twilio: TwilioCalls | None,
        record: Callable[..., Any],
        recorder: SessionRecorder,
        outbound: OutboundAudio,
    ) -> None:
        self._twilio = twilio
        self._record = record
        self._recorder = recorder
        self._outbound = outbound
        self.call_sid: str | None = None  # set at the stream's ``start``

    async def heard(self, started_before: int, grace_s: float) -> str:
        """A response begun after ``started_before`` has ended and every mark sent has
        echoed (``marks``), or ``hangup_grace`` ran out."""
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self._recorder.responses_idle_since(started_before) and self._outbound.idle:
                return "marks"
            await asyncio.sleep(POLL_S)
        return "hangup_grace"

    async def hang_up(self) -> str:
        return await self.rest("hang up", lambda twilio, sid: twilio.hang_up(sid))

    async def transfer(self, destination: str, target: str) -> dict[str, Any] | str:
        """``<Dial>`` the target once what the agent said has played (at most 5 s)."""
        if self._twilio is None:
            self._record("transfer.refused", destination=destination, why="no REST credentials")
            return "Transfers are not available on this line."
        for _ in range(TRANSFER_WAIT_POLLS):
            if self._outbound.playback.unplayed_ms == 0:
                break
            await asyncio.sleep(POLL_S)
        twiml = dial_twiml(target)
        via = await self.rest("transfer", lambda twilio, sid: twilio.update_twiml(sid, twiml))
        return {"target": target, "via": via}

    async def rest(self, what: str, action: Callable[[TwilioCalls, str], Awaitable[bool]]) -> str:
        """Run one REST update of this call; returns how it went, for the log. Never raises."""
        if self._twilio is None or self.call_sid is None:
            return "none (no Twilio REST credentials; stream closed)"
        try:
            done = await action(self._twilio, self.call_sid)
        except Exception as exc:
            self._record("twilio.error", action=what, error=describe_error(exc))
            return "twilio_rest failed"
        return "twilio_rest" if done else "twilio_rest (call already ended)"


class MediaCallControl(CallController):
    """Hang-up, transfer, keypad and answering-machine handling for one Media Streams call.

    Args:
        features: DTMF timeout, hang-up grace, transfer allow-list.
        twilio: REST access to the live call; None closes the stream instead.
        record: writes a call-log record.
        recorder: the session's recorder (response counters: when the goodbye has finished).
        outbound: the call's outbound audio (whether everything sent has played).
        end: asks the call to end with a reason.
        clock: the caller's audio clock, seconds (the keypad's budgets).
    """

    def __init__(
        self,
        features: CallFeatures,
        twilio: TwilioCalls | None,
        record: Callable[..., Any],
        recorder: SessionRecorder,
        outbound: OutboundAudio,
        end: Callable[[str], None],
        clock: Callable[[], float],
    ) -> None:
        self.twilio = TwilioCarrier(twilio, record, recorder, outbound)
        super().__init__(features, self.twilio, record, recorder, end)
        self._outbound = outbound
        self.keypad = Keypad(features.dtmf_timeout, lambda: self.session, record, clock)

    @property
    def call_sid(self) -> str | None:
        return self.twilio.call_sid

    @call_sid.setter
    def call_sid(self, call_sid: str | None) -> None:
        self.twilio.call_sid = call_sid

    def on_dtmf(self, digit: str) -> None:
        """A keypad digit (see :class:`~.keypad.Keypad`)."""
        self.keypad.press(digit)

    async def stop(self) -> None:
        """Drop pending digits; cancel a pending hang-up or transfer (the call is over)."""
        await self.keypad.stop()
        await super().stop()

    # ------------------------------------------------------------------ who answered

    async def on_answered(self, answered_by: str, message: str) -> str:
        """Twilio's answering machine detection said who answered this outbound call: a
        machine (its greeting and beep over) gets ``message`` in the agent's voice, then the
        call hangs up once it has played; a fax or an unknown answer is hung up at once; a
        human changes nothing."""
        self._record("answered_by", answered_by=answered_by)
        if answered_by not in MACHINE and answered_by not in ("fax", "unknown"):
            return "the conversation goes on"
        if self._hangup_task is not None:
            return "already ending"
        if answered_by in MACHINE:
            self.hang_up_with(self._leave_voicemail(message))
            return "leaving a voicemail"
        reason = "fax" if answered_by == "fax" else "amd_unknown"
        self.hang_up_with(self._hang_up_now(reason))
        return "hanging up"

    async def _leave_voicemail(self, message: str) -> None:
        """Stop whatever the agent was saying to the greeting, say the message, wait for it to
        play (marks), log ``voicemail.left``, hang up."""
        session = self.session
        out = self._outbound
        if session is not None and (out.playing or out.paused):
            try:
                await session.interrupt()
            except Exception as exc:
                self._record("model.error", where="voicemail", error=describe_error(exc))
            if (out.playing or out.paused) and out.current_item is not None:
                await out.on_interrupted(out.current_item)
        started_before = self._recorder.responses_started
        t0 = time.monotonic()
        await self.ask(lambda s: leave_voicemail(s, message))
        await self.twilio.heard(started_before, self._features.hangup_grace)
        if self._recorder.responses_started > started_before:
            self._record(
                "voicemail.left", chars=len(message), ms=round((time.monotonic() - t0) * 1000)
            )
        else:
            self._record("voicemail.failed", why="the model gave no response")
        via = await self.twilio.hang_up()
        self._record("call.hangup", via=via, reason="voicemail")
        self._end("voicemail")

    async def _hang_up_now(self, reason: str) -> None:
        via = await self.twilio.hang_up()
        self._record("call.hangup", via=via, reason=reason)
        self._end(reason)
