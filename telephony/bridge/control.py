"""Call control on a Media Streams call: the shared core (:mod:`telephony.control`) with
Twilio as the carrier, and what only this path does: keypad digits to the agent, and what to do
when answering machine detection says a machine or a fax answered an outbound call.

Twilio's steps (:class:`TwilioCarrier`): the caller heard a response once the marks after its
audio echoed; hang-up and transfer are REST updates of the live call (``Status=completed``,
TwiML ``<Dial>``). A warm transfer's steps are :mod:`.warm`'s; on the person's leg this
control holds the :class:`~telephony.agent.briefing.Briefing` and takes the decision (the
briefing agent's tools, or keys 1 and 2), which goes to the caller's owner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..agent.briefing import Briefing, briefing_opening
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
# a warm transfer's decision to the caller's owner: (briefing, outcome, why, this leg) -> taken
Report = Callable[[Briefing, str, str, str], Awaitable[bool]]
DECLINED_BY_KEYPAD = (
    "The person pressed 2: they decline the call. Tell them you will let the caller know."
)
CALLER_GONE = "The caller has hung up already; there is nobody to put through."


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
        self.briefing: Briefing | None = None  # on a warm transfer's person leg
        self._report: Report | None = None
        self.decided: str | None = None  # the person's decision, once made

    def brief(self, briefing: Briefing, report: Report) -> None:
        """This call is a warm transfer's person leg: its agent briefs them with
        ``briefing``; the decision goes to ``report``."""
        self.briefing, self._report = briefing, report

    def opening(self) -> str | None:
        """The first words of a person leg's agent, logged (``transfer.briefing``) as the
        session is asked for them; None on a call that continues a handed-off transfer (the
        caller holds at once: no greeting); empty on any other call (the greeting)."""
        if self.handoff is not None:
            return None
        if self.briefing is None:
            return ""
        text = briefing_opening(self.briefing)
        self._record("transfer.briefing", leg="person", summary=self.briefing.summary, text=text)
        return text

    async def decide_transfer(self, accepted: bool, why: str) -> str:
        """The person's answer on a briefing leg (the agent's tools, or keys 1 and 2): logged,
        sent to the caller's owner. Accepted: this leg's stream ends and the owner moves it
        into the conference. Declined: the agent says goodbye, then this leg hangs up."""
        if self.briefing is None or self._report is None:
            return "There is no transfer on this call."
        if self.decided is not None:
            return "The decision is made already."
        self.decided = outcome = "accepted" if accepted else "declined"
        self._leaving = "transferred" if accepted else None
        self._record(f"transfer.{outcome}", leg="person", why=why)
        taken = await self._report(self.briefing, outcome, why, self.call_sid or "")
        if not taken:
            self._leaving = None
            self._record("transfer.unclaimed", leg="person", why="the caller's transfer is over")
            if why == "keypad":  # no tool call under way: ask for the goodbye
                await self.end_politely("transfer_over", CALLER_GONE, by="transfer")
            else:  # the tool's output asks for it
                self.hang_up_after("transfer_over", self._recorder.responses_started)
            return f"{CALLER_GONE} Tell the person so and say goodbye."
        if accepted:
            self._end("transferred")
            return "The caller is being put through now. Say nothing more."
        if why == "keypad":
            await self.end_politely("transfer_declined", DECLINED_BY_KEYPAD, by="keypad")
        else:
            self.hang_up_after("transfer_declined", self._recorder.responses_started)
        return "Say one short sentence that you will let the caller know, and goodbye."

    @property
    def call_sid(self) -> str | None:
        return self.twilio.call_sid

    @call_sid.setter
    def call_sid(self, call_sid: str | None) -> None:
        self.twilio.call_sid = call_sid

    def on_dtmf(self, digit: str) -> None:
        """A keypad digit (see :class:`~.keypad.Keypad`); on a briefing leg, 1 accepts and 2
        declines."""
        if self.briefing is not None and digit in "12" and self.decided is None:
            self.hang_up_with(self.decide_transfer(digit == "1", "keypad"))
            return
        self.keypad.press(digit)

    async def stop(self) -> None:
        """Drop pending digits; cancel a pending hang-up or transfer (the call is over). A
        person leg that ends undecided tells the caller's owner (``hung_up``)."""
        await self.keypad.stop()
        await super().stop()
        if self.briefing is not None and self._report is not None and self.decided is None:
            self.decided = "hung_up"  # (or the caller's owner ended this leg)
            self._record("transfer.declined", leg="person", why="leg_ended")
            await self._report(self.briefing, "hung_up", "", self.call_sid or "")

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
        self._leaving = "voicemail"
        via = await self.twilio.hang_up()
        self._record("call.hangup", via=via, reason="voicemail")
        self._end("voicemail")

    async def _hang_up_now(self, reason: str) -> None:
        self._leaving = reason
        via = await self.twilio.hang_up()
        self._record("call.hangup", via=via, reason=reason)
        self._end(reason)
