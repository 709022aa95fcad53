"""Call control on a Media Streams call: keypad digits to the agent, ``end_call`` and
``transfer_call`` through Twilio's REST API, the same two asked for by an operator
(``POST /calls/{sid}/hangup|transfer`` on any instance), the agent speaking first, and what to
do when answering machine detection says a machine or a fax answered an outbound call.

Implements :class:`telephony.agent.tools.CallControl` for the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents.realtime import RealtimeSession

from ..agent.sessions import announce_transfer, leave_voicemail, say_goodbye
from ..agent.tools import transfer_refusal
from ..config import CallFeatures
from ..observability.call_log import describe_error
from ..observability.recorder import SessionRecorder
from ..twilio.dial import MACHINE
from ..twilio.rest import TwilioCalls
from ..twilio.twiml import dial_twiml
from .outbound import OutboundAudio

__all__ = ["DTMF_TEXT", "MediaCallControl"]

DTMF_TEXT = "The caller pressed these keys on the phone keypad: {}"
POLL_S = 0.02
MAX_DTMF_DIGITS = 32  # keys in one message to the agent
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
        self._transfer_task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()  # digit messages on their way

    @property
    def busy(self) -> bool:
        """A hang-up or a transfer is on its way."""
        return any(t is not None and not t.done() for t in (self._hangup_task, self._transfer_task))

    async def stop(self) -> None:
        """Cancel pending digits and a pending hang-up or transfer (the call is over)."""
        for task in (self._dtmf_task, self._hangup_task, self._transfer_task, *self._sending):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # ------------------------------------------------------------------ keypad

    def on_dtmf(self, digit: str) -> None:
        """Collect keys until ``#``, ``dtmf_timeout`` of quiet or 32 keys, then tell the agent."""
        self._record("dtmf", digit=digit)
        self._digits.append(digit)
        if self._dtmf_task is not None:
            self._dtmf_task.cancel()
        if digit == "#" or len(self._digits) >= MAX_DTMF_DIGITS:  # a bounded message
            digits, self._digits = self._digits, []
            self._dtmf_task = None
            sending = asyncio.create_task(self._send_digits(digits))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)
        else:
            self._dtmf_task = asyncio.create_task(self._send_digits_after_quiet())

    async def _send_digits_after_quiet(self) -> None:
        await asyncio.sleep(self._features.dtmf_timeout)
        digits, self._digits = self._digits, []
        await self._send_digits(digits)

    async def _send_digits(self, digits: list[str]) -> None:
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

    async def _hang_up_after_goodbye(self, reason: str = "agent_hangup") -> None:
        t0 = time.monotonic()
        await self._goodbye_played(self._recorder.responses_started)
        waited_ms = round((time.monotonic() - t0) * 1000)
        via = await self._rest("hang up", lambda twilio, sid: twilio.hang_up(sid))
        self._record("call.hangup", via=via, waited_ms=waited_ms)
        self._end(reason)

    async def _goodbye_played(self, started_before: int) -> None:
        """Wait until a response that began after ``started_before`` responses has ended and
        all its audio has played, at most ``hangup_grace`` seconds."""
        deadline = time.monotonic() + self._features.hangup_grace
        while time.monotonic() < deadline:
            goodbye_done = self._recorder.responses_idle_since(started_before)
            if goodbye_done and self._outbound.idle:
                break
            await asyncio.sleep(POLL_S)

    async def operator_hang_up(self, reason: str) -> str:
        """An operator ends the call: the agent says goodbye, then Twilio hangs up."""
        if self._hangup_task is not None:
            return "already ending"
        self._record("hangup.requested", reason=reason, by="operator")
        self._hangup_task = asyncio.create_task(self._hang_up_after_goodbye("operator_hangup"))
        await self._ask(say_goodbye)
        return "hanging up after the agent's goodbye"

    async def operator_transfer(self, destination: str) -> str:
        """An operator transfers the call: the agent says so, then Twilio dials ``destination``
        (an allowed name)."""
        if destination not in self._features.transfer_targets:
            return transfer_refusal(self._features.transfer_targets, destination)
        if self._transfer_task is not None or self._hangup_task is not None:
            return "already ending"
        self._record("transfer.requested", destination=destination, by="operator")
        started_before = self._recorder.responses_started

        async def announce_then_transfer() -> None:
            await self._goodbye_played(started_before)
            await self.transfer(destination)

        self._transfer_task = asyncio.create_task(announce_then_transfer())
        await self._ask(lambda session: announce_transfer(session, destination))
        return "transferring after the agent's announcement"

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
            self._hangup_task = asyncio.create_task(self._leave_voicemail(message))
            return "leaving a voicemail"
        reason = "fax" if answered_by == "fax" else "amd_unknown"
        self._hangup_task = asyncio.create_task(self._hang_up_now(reason))
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
        await self._ask(lambda s: leave_voicemail(s, message))
        await self._goodbye_played(started_before)
        if self._recorder.responses_started > started_before:
            self._record(
                "voicemail.left", chars=len(message), ms=round((time.monotonic() - t0) * 1000)
            )
        else:
            self._record("voicemail.failed", why="the model gave no response")
        via = await self._rest("hang up", lambda twilio, sid: twilio.hang_up(sid))
        self._record("call.hangup", via=via, reason="voicemail")
        self._end("voicemail")

    async def _hang_up_now(self, reason: str) -> None:
        via = await self._rest("hang up", lambda twilio, sid: twilio.hang_up(sid))
        self._record("call.hangup", via=via, reason=reason)
        self._end(reason)

    async def _ask(self, say: Callable[[RealtimeSession], Awaitable[None]]) -> None:
        """Ask the session for a response (a goodbye, an announcement); errors are logged."""
        if self.session is None:
            return
        try:
            await say(self.session)
        except Exception as exc:
            self._record("model.error", where="operator", error=describe_error(exc))

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
